"""eSpeak NG speech synthesis through ctypes, with no system install.

The ``espeakng-loader`` wheel ships ``libespeak-ng`` and its voice data; this
module drives it directly. eSpeak keeps global state (one current voice, one
set of parameters, one callback), so a process holds exactly one initialized
engine, guarded by a lock. The engine remembers the process id it was started
in and re-initializes after a fork, so the module is safe to use from a
``multiprocessing`` pool of either start method.

Determinism: eSpeak carries hidden state from one utterance to the next
(pitch flutter phase, amplitude smoothing) that ``espeak_Initialize`` does
not reset, and seeds its noise generator from the clock, so the same call
gives slightly different samples depending on what was spoken before and
when. Where ``os.fork`` exists, each utterance is therefore spoken in a
short-lived child forked from an engine that has never synthesized, with the
noise generators (eSpeak's and libc's ``rand``) reseeded to a constant, and
the samples come back over a pipe (~10 ms overhead). Every call then starts from the same
state and the output depends only on its arguments. Without fork the engine
speaks in-process (same text, not the same samples).

Phoneme events: the engine is initialized with eSpeak's phoneme events on,
so every synthesis also reports what it spoke: each phoneme (eSpeak's ASCII
mnemonic, stress marks included, ``_`` and ``_:`` for pauses) and each word,
with the millisecond at which it starts in the output. ``speak`` returns them
with the audio as a ``Speech``, their times moved to the trimmed audio.

Parameters are eSpeak's own: ``rate`` in words per minute (80..450, default
175), ``volume`` 0..200 (100 = normal), ``pitch`` 0..100 base pitch, ``range``
0..100 pitch range (0 = monotone). Synthesis is deterministic: the same text,
voice and parameters give the same samples.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import struct
import threading

import numpy as np

from csm_jax.audio import io as audio_lib
from csm_jax.config.errors import UserError

NATIVE_RATE = 22050

# espeak_AUDIO_OUTPUT / espeak_PARAMETER / espeak_POSITION_TYPE values from
# speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4, "wordgap": 7}
_LIMITS = {"rate": (80, 450), "volume": (0, 200), "pitch": (0, 100),
           "range": (0, 100), "wordgap": (0, 100)}

_INITIALIZE_PHONEME_EVENTS = 0x0001
# espeak_EVENT_TYPE values.
_EVENT_END_OF_LIST, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7

_SEED = 0x5EED


class _Event(ctypes.Structure):
  """``espeak_EVENT`` of speak_lib.h; ``id`` is its union, read as the
  phoneme's mnemonic (char[8]) for phoneme events."""
  _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
              ("text_position", ctypes.c_int), ("length", ctypes.c_int),
              ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
              ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                             ctypes.c_int, ctypes.POINTER(_Event))


class EspeakError(UserError, RuntimeError):
  """The eSpeak library failed to load, initialize, or synthesize."""


@dataclasses.dataclass(frozen=True)
class Prosody:
  """eSpeak synthesis parameters (see module docstring for units)."""
  rate: int = 175
  volume: int = 100
  pitch: int = 50
  range: int = 50
  wordgap: int = 0

  def clamped(self) -> "Prosody":
    vals = {k: int(round(min(max(getattr(self, k), lo), hi)))
            for k, (lo, hi) in _LIMITS.items()}
    return Prosody(**vals)


@dataclasses.dataclass
class Speech:
  """What eSpeak spoke: float32 audio and, in seconds from its first sample,
  the start of every phoneme and word.

  ``phonemes`` are eSpeak mnemonics (``'oU``, ``D``, ``_:``); ``words`` are
  the 0-based character offsets into the text of each word spoken.
  """
  audio: np.ndarray
  sample_rate: int
  phonemes: list[str]
  phoneme_starts: np.ndarray   # (n_phonemes,) float32 seconds
  words: np.ndarray            # (n_words,) int32 character offsets
  word_starts: np.ndarray      # (n_words,) float32 seconds


class _Engine:
  """The process's single eSpeak instance."""

  def __init__(self):
    import espeakng_loader  # imported lazily: only synthesis needs it
    lib_path = espeakng_loader.get_library_path()
    try:
      self.lib = ctypes.CDLL(lib_path)
    except OSError as e:
      raise EspeakError(f"cannot load eSpeak NG library {lib_path}: {e}") from e
    data_path = espeakng_loader.get_data_path()
    lib = self.lib
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int,
                                      ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                 ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p,
                                 ctypes.c_void_p]
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p),
                                          ctypes.c_int, ctypes.c_int]
    # eSpeak NG seeds its own noise generator from time() at initialization;
    # reseeding before each utterance is what makes output reproducible.
    self.set_rand_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
    # libc is opened here, not in a forked child, where dlopen could block
    # on a loader lock held by another thread of the parent at fork time.
    self.libc = ctypes.CDLL(None)
    if self.set_rand_seed is not None:
      self.set_rand_seed.restype = None
      self.set_rand_seed.argtypes = [ctypes.c_long]
    sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                               data_path.encode(), _INITIALIZE_PHONEME_EVENTS)
    if sr <= 0:
      raise EspeakError(f"espeak_Initialize failed (returned {sr}) with data "
                        f"path {data_path}")
    self.sample_rate = sr
    self.chunks: list[np.ndarray] = []
    self.events: list[tuple[int, int, int, str]] = []
    # The ctypes callback object must stay referenced for the engine's
    # lifetime, or the C side would call freed memory.
    self._callback = _CALLBACK(self._on_audio)
    lib.espeak_SetSynthCallback(self._callback)
    self.pid = os.getpid()

  def _on_audio(self, wav, n, events):
    if n > 0 and wav:
      self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    i = 0
    while events and events[i].type != _EVENT_END_OF_LIST:
      e = events[i]
      if e.type in (_EVENT_WORD, _EVENT_PHONEME):
        name = (bytes(e.id).split(b"\0")[0].decode("ascii", "replace")
                if e.type == _EVENT_PHONEME else "")
        self.events.append((e.type, e.audio_position, e.text_position, name))
      i += 1
    return 0

  def synth(self, text: str, voice: str, prosody: Prosody):
    """(int16 samples, events): events are (type, ms, text position, name)."""
    if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise EspeakError(f"unknown eSpeak voice {voice!r}")
    p = prosody.clamped()
    for name, pid in _PARAM.items():
      self.lib.espeak_SetParameter(pid, getattr(p, name), 0)
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    self.libc.srand(_SEED)
    if self.set_rand_seed is not None:
      self.set_rand_seed(_SEED)
    self.chunks, self.events = [], []
    err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0,
                                _CHARS_UTF8, None, None)
    if err != 0:
      raise EspeakError(f"espeak_Synth failed with code {err} for {text!r}")
    self.lib.espeak_Synchronize()
    out = (np.concatenate(self.chunks) if self.chunks
           else np.zeros(0, np.int16))
    events, self.chunks, self.events = self.events, [], []
    return out, events

  def phonemes(self, text: str, voice: str) -> list[list[str]]:
    """eSpeak's phonemes of ``text`` without speaking it, one list of
    mnemonics per word."""
    if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise EspeakError(f"unknown eSpeak voice {voice!r}")
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    ptr = ctypes.c_void_p(ctypes.addressof(buf))
    words = []
    # One clause per call; eSpeak advances ``ptr`` and sets it to NULL at
    # the end. "|" between a word's phonemes (bits 8-23 of the mode).
    while ptr.value:
      out = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8,
                                           ord("|") << 8)
      words += [w.split("|") for w in (out or b"").decode("ascii",
                                                          "replace").split()]
    return words

  def synth_isolated(self, text: str, voice: str, prosody: Prosody):
    """``synth`` in a forked child so this engine never leaves its state."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak, send status + payload, exit without cleanup
      status, payload = 0, b""
      try:
        os.close(r)
        pcm, events = self.synth(text, voice, prosody)
        payload = pcm.tobytes() + json.dumps(events).encode()
        status = 2 + pcm.size  # > 1: success, carrying the sample count
      except BaseException as e:  # reported to the parent, never raised here
        status, payload = 1, str(e).encode("utf-8", "replace")
      try:
        with os.fdopen(w, "wb") as f:
          f.write(struct.pack("<QQ", status, len(payload)) + payload)
      finally:
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
      data = f.read()
    os.waitpid(pid, 0)
    if len(data) < 16:
      raise EspeakError(f"eSpeak worker process died synthesizing {text!r}")
    status, n = struct.unpack("<QQ", data[:16])
    body = data[16: 16 + n]
    if status < 2 or len(body) != n:
      raise EspeakError(body.decode("utf-8", "replace")
                        or f"truncated eSpeak output for {text!r}")
    samples = 2 * (status - 2)
    events = json.loads(body[samples:].decode()) if n > samples else []
    return (np.frombuffer(body[:samples], np.int16).copy(),
            [tuple(e) for e in events])


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
  global _engine
  # After fork a child inherits the parent's module state but eSpeak's
  # internal buffers belong to the parent: start a fresh engine.
  if _engine is None or _engine.pid != os.getpid():
    _engine = _Engine()
  return _engine


def speak(text: str, voice: str = "en-us", prosody: Prosody = Prosody(),
          sample_rate: int = NATIVE_RATE, trim: bool = True,
          pad_seconds: float = 0.05, isolate: bool | None = None) -> Speech:
  """Speaks ``text`` with eSpeak voice ``voice`` (e.g. "en-us+m3", "en-029").

  Returns a ``Speech``: float32 mono at ``sample_rate`` (resampled from
  eSpeak's native 22050 Hz with soxr) with the phonemes and words eSpeak
  spoke and their start times. With ``trim`` the leading/trailing silence
  eSpeak adds is cut to ``pad_seconds`` so turn boundaries are where the
  speech is; the times count from the trimmed audio's first sample.
  ``isolate`` (default: wherever ``os.fork`` exists) speaks in a forked
  child so the output is bit-exact for the same arguments (module docstring).
  ``isolate=False`` speaks in-process and changes the engine's hidden state,
  so isolated calls made later by the same process no longer match other
  processes bit for bit. Raises EspeakError for an unknown voice or a text
  that yields no audio.
  """
  if isolate is None:
    isolate = hasattr(os, "fork")
  if not text or not text.strip():
    raise EspeakError("cannot synthesize empty text")
  with _lock:
    eng = _get_engine()
    pcm, events = (eng.synth_isolated(text, voice, prosody) if isolate
                   else eng.synth(text, voice, prosody))
    native = eng.sample_rate
  if pcm.size == 0:
    raise EspeakError(f"eSpeak produced no audio for {text!r} ({voice})")
  x = audio_lib.from_int16(pcm)
  start = 0
  if trim:
    start, stop = _speech_span(x, native, pad_seconds)
    x = x[start:stop]
  offset = start / native
  phon = [(ms / 1000.0 - offset, name) for kind, ms, _, name in events
          if kind == _EVENT_PHONEME and name]
  words = [(ms / 1000.0 - offset, pos) for kind, ms, pos, _ in events
           if kind == _EVENT_WORD]
  # eSpeak's text positions count characters from 1.
  return Speech(
      audio=audio_lib.resample(x, native, sample_rate),
      sample_rate=sample_rate,
      phonemes=[n for _, n in phon],
      phoneme_starts=np.asarray([max(0.0, t) for t, _ in phon], np.float32),
      words=np.asarray([max(0, p - 1) for _, p in words], np.int32),
      word_starts=np.asarray([max(0.0, t) for t, _ in words], np.float32))


def phonemize(text: str, voice: str = "en-us") -> list[list[str]]:
  """The phonemes eSpeak would speak for ``text``, one list of mnemonics
  per word (stress marks included), without synthesizing it."""
  if not text or not text.strip():
    raise EspeakError("cannot phonemize empty text")
  with _lock:
    return _get_engine().phonemes(text, voice)


def synthesize(text: str, voice: str = "en-us", prosody: Prosody = Prosody(),
               sample_rate: int = NATIVE_RATE, trim: bool = True,
               pad_seconds: float = 0.05,
               isolate: bool | None = None) -> np.ndarray:
  """The audio of ``speak`` alone (float32 mono at ``sample_rate``)."""
  return speak(text, voice, prosody, sample_rate, trim, pad_seconds,
               isolate).audio


def _speech_span(x: np.ndarray, sr: int, pad_seconds: float,
                 threshold: float = 1e-3) -> tuple[int, int]:
  loud = np.flatnonzero(np.abs(x) > threshold)
  if loud.size == 0:
    return 0, x.size
  pad = int(pad_seconds * sr)
  return max(0, loud[0] - pad), loud[-1] + 1 + pad


def trim_silence(x: np.ndarray, sr: int, pad_seconds: float = 0.05,
                 threshold: float = 1e-3) -> np.ndarray:
  """Cuts leading/trailing samples below ``threshold``, keeping a short pad."""
  start, stop = _speech_span(x, sr, pad_seconds, threshold)
  return x[start:stop]


def native_sample_rate() -> int:
  with _lock:
    return _get_engine().sample_rate
