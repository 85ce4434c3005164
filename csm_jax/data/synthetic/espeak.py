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

Parameters are eSpeak's own: ``rate`` in words per minute (80..450, default
175), ``volume`` 0..200 (100 = normal), ``pitch`` 0..100 base pitch, ``range``
0..100 pitch range (0 = monotone). Synthesis is deterministic: the same text,
voice and parameters give the same samples.
"""

from __future__ import annotations

import ctypes
import dataclasses
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

_SEED = 0x5EED
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short),
                             ctypes.c_int, ctypes.c_void_p)


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
                               data_path.encode(), 0)
    if sr <= 0:
      raise EspeakError(f"espeak_Initialize failed (returned {sr}) with data "
                        f"path {data_path}")
    self.sample_rate = sr
    self.chunks: list[np.ndarray] = []
    # The ctypes callback object must stay referenced for the engine's
    # lifetime, or the C side would call freed memory.
    self._callback = _CALLBACK(self._on_audio)
    lib.espeak_SetSynthCallback(self._callback)
    self.pid = os.getpid()

  def _on_audio(self, wav, n, events):
    del events
    if n > 0 and wav:
      self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
    return 0

  def synth(self, text: str, voice: str, prosody: Prosody) -> np.ndarray:
    if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
      raise EspeakError(f"unknown eSpeak voice {voice!r}")
    p = prosody.clamped()
    for name, pid in _PARAM.items():
      self.lib.espeak_SetParameter(pid, getattr(p, name), 0)
    buf = ctypes.create_string_buffer(text.encode("utf-8"))
    self.libc.srand(_SEED)
    if self.set_rand_seed is not None:
      self.set_rand_seed(_SEED)
    self.chunks = []
    err = self.lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0,
                                _CHARS_UTF8, None, None)
    if err != 0:
      raise EspeakError(f"espeak_Synth failed with code {err} for {text!r}")
    self.lib.espeak_Synchronize()
    out = (np.concatenate(self.chunks) if self.chunks
           else np.zeros(0, np.int16))
    self.chunks = []
    return out

  def synth_isolated(self, text: str, voice: str,
                     prosody: Prosody) -> np.ndarray:
    """``synth`` in a forked child so this engine never leaves its state."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: speak, send status + payload, exit without cleanup
      status, payload = 0, b""
      try:
        os.close(r)
        payload = self.synth(text, voice, prosody).tobytes()
      except BaseException as e:  # reported to the parent, never raised here
        status, payload = 1, str(e).encode("utf-8", "replace")
      try:
        with os.fdopen(w, "wb") as f:
          f.write(struct.pack("<BQ", status, len(payload)) + payload)
      finally:
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
      data = f.read()
    os.waitpid(pid, 0)
    if len(data) < 9:
      raise EspeakError(f"eSpeak worker process died synthesizing {text!r}")
    status, n = struct.unpack("<BQ", data[:9])
    body = data[9: 9 + n]
    if status or len(body) != n:
      raise EspeakError(body.decode("utf-8", "replace")
                        or f"truncated eSpeak output for {text!r}")
    return np.frombuffer(body, np.int16).copy()


_engine: _Engine | None = None
_lock = threading.Lock()


def _get_engine() -> _Engine:
  global _engine
  # After fork a child inherits the parent's module state but eSpeak's
  # internal buffers belong to the parent: start a fresh engine.
  if _engine is None or _engine.pid != os.getpid():
    _engine = _Engine()
  return _engine


def synthesize(text: str, voice: str = "en-us", prosody: Prosody = Prosody(),
               sample_rate: int = NATIVE_RATE, trim: bool = True,
               pad_seconds: float = 0.05,
               isolate: bool | None = None) -> np.ndarray:
  """Speaks ``text`` with eSpeak voice ``voice`` (e.g. "en-us+m3", "en-029").

  Returns float32 mono at ``sample_rate`` (resampled from eSpeak's native
  22050 Hz with soxr). With ``trim`` the leading/trailing silence eSpeak adds
  is cut to ``pad_seconds`` so turn boundaries are where the speech is.
  ``isolate`` (default: wherever ``os.fork`` exists) speaks in a forked
  child so the output is bit-exact for the same arguments (module docstring).
  ``isolate=False`` speaks in-process and changes the engine's hidden state,
  so isolated calls made later by the same process no longer match other
  processes bit for bit. Raises EspeakError for an unknown voice or a text that yields no audio.
  """
  if isolate is None:
    isolate = hasattr(os, "fork")
  if not text or not text.strip():
    raise EspeakError("cannot synthesize empty text")
  with _lock:
    eng = _get_engine()
    pcm = (eng.synth_isolated(text, voice, prosody) if isolate
           else eng.synth(text, voice, prosody))
    native = eng.sample_rate
  if pcm.size == 0:
    raise EspeakError(f"eSpeak produced no audio for {text!r} ({voice})")
  x = audio_lib.from_int16(pcm)
  if trim:
    x = trim_silence(x, native, pad_seconds)
  return audio_lib.resample(x, native, sample_rate)


def trim_silence(x: np.ndarray, sr: int, pad_seconds: float = 0.05,
                 threshold: float = 1e-3) -> np.ndarray:
  """Cuts leading/trailing samples below ``threshold``, keeping a short pad."""
  loud = np.flatnonzero(np.abs(x) > threshold)
  if loud.size == 0:
    return x
  pad = int(pad_seconds * sr)
  return x[max(0, loud[0] - pad): loud[-1] + 1 + pad]


def native_sample_rate() -> int:
  with _lock:
    return _get_engine().sample_rate
