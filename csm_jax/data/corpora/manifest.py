"""Conversation manifests: the one input format for real dialogue corpora.

A manifest is a JSONL file, one conversation per line::

  {"conversation_id": "call-0007",
   "split": "train",                         # optional: train | validation
   "turns": [
     {"speaker": "alice", "text": "Hi there.", "audio": "wav/0007.wav",
      "start": 0.00, "end": 1.42, "emotion": "happy"},
     {"speaker": 1, "text": "Hello!", "audio": "/abs/path/b.flac",
      "channel": 1}
   ]}

Per turn: ``speaker`` (str or int, kept as its name), ``text``, ``audio``
(relative to the manifest's directory, or absolute) are required;
``start``/``end`` (seconds) cut a segment out of a longer file, so several
turns may share one recording; ``channel`` (0-based) picks one channel of a
multichannel file (dialogue recordings often put each speaker on its own
channel) instead of downmixing; ``emotion`` is a free label;
``word_starts`` (optional) gives the start of each whitespace-separated
word of ``text``, in seconds from the turn's first sample (``null`` where
unknown), as a forced aligner reports them: the aligned text stream
trains from them (``data.text_alignment.turn_timing``).

Structural mistakes (bad JSON, a missing or mistyped field, a duplicate
conversation id) raise ``ManifestError`` naming file, line and field: the
manifest itself is broken and must be fixed. A turn whose *data* is bad is
instead rejected with a ``TurnRejected`` carrying one reason (``REASONS``):
the audio reasons of ``audio.AudioError`` plus ``missing`` (no such file),
``empty_text``, ``bad_text`` (not valid UTF-8) and ``bad_segment``
(start/end/channel outside the file, or end <= start). Builders count,
skip and report those and go on.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

import numpy as np
import soundfile as sf

from csm_jax.audio import io as audio_lib
from csm_jax.config.errors import UserError

REASONS = audio_lib.REASONS + ("missing", "empty_text", "bad_text",
                               "bad_segment")
SPLITS = ("train", "validation")


class ManifestError(UserError, ValueError):
  """The manifest is malformed; the message names file, line and field."""


class TurnRejected(Exception):
  """One turn is unusable; ``reason`` is one of ``REASONS``."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    if reason not in REASONS:
      raise ValueError(f"unknown rejection reason {reason!r}; "
                       f"expected one of {REASONS}")
    self.path, self.reason, self.detail = str(path), reason, detail
    super().__init__(f"{path}: {reason}" + (f" ({detail})" if detail else ""))


@dataclasses.dataclass(frozen=True)
class Turn:
  speaker: str
  text: str            # may hold surrogate escapes if the source was not UTF-8
  audio: str           # absolute path
  index: int           # position in the manifest's turn list
  start: float | None = None
  end: float | None = None
  channel: int | None = None
  emotion: str = ""
  word_starts: tuple[float | None, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Conversation:
  conversation_id: str
  turns: tuple[Turn, ...]
  split: str | None = None
  source: str = "<memory>"   # "manifest.jsonl:12", for error messages


def _field(obj: dict, key: str, types, where: str, required: bool = True):
  if key not in obj or obj[key] is None:
    if required:
      raise ManifestError(f"{where}: missing field {key!r}")
    return None
  value = obj[key]
  # bool is an int subclass; true/false is never a valid number here.
  if isinstance(value, bool) or not isinstance(value, types):
    names = "/".join(t.__name__ for t in (types if isinstance(types, tuple)
                                          else (types,)))
    raise ManifestError(f"{where}: field {key!r} must be {names}, got "
                        f"{type(value).__name__} {value!r}")
  return value


def parse_conversation(obj: Any, base_dir: str,
                       where: str = "<memory>") -> Conversation:
  """One manifest line (already JSON-decoded) as a Conversation."""
  if not isinstance(obj, dict):
    raise ManifestError(f"{where}: expected a JSON object, got "
                        f"{type(obj).__name__}")
  cid = _field(obj, "conversation_id", str, where)
  if not cid.strip():
    raise ManifestError(f"{where}: field 'conversation_id' is empty")
  split = _field(obj, "split", str, where, required=False)
  if split is not None and split not in SPLITS:
    raise ManifestError(f"{where}: field 'split' must be one of {SPLITS}, "
                        f"got {split!r}")
  raw_turns = _field(obj, "turns", list, where)
  if not raw_turns:
    raise ManifestError(f"{where}: field 'turns' is empty")
  turns = []
  for i, t in enumerate(raw_turns):
    tw = f"{where}: turns[{i}]"
    if not isinstance(t, dict):
      raise ManifestError(f"{tw}: expected a JSON object")
    path = _field(t, "audio", str, tw)
    start = _field(t, "start", (int, float), tw, required=False)
    end = _field(t, "end", (int, float), tw, required=False)
    channel = _field(t, "channel", int, tw, required=False)
    turns.append(Turn(
        speaker=str(_field(t, "speaker", (str, int), tw)),
        text=_field(t, "text", str, tw),
        audio=os.path.normpath(os.path.join(base_dir, path)),
        index=i,
        start=None if start is None else float(start),
        end=None if end is None else float(end),
        channel=channel,
        emotion=_field(t, "emotion", str, tw, required=False) or "",
        word_starts=_word_starts(t, tw)))
  return Conversation(cid, tuple(turns), split, where)


def _word_starts(t: dict, where: str) -> tuple[float | None, ...] | None:
  """A turn's ``word_starts``: one number (or null) per word of its text,
  non-negative and non-decreasing."""
  raw = _field(t, "word_starts", list, where, required=False)
  if raw is None:
    return None
  n = len(str(t.get("text", "")).split())
  if len(raw) != n:
    raise ManifestError(f"{where}: field 'word_starts' has {len(raw)} "
                        f"entries for the {n} words of 'text'")
  out, last = [], 0.0
  for i, v in enumerate(raw):
    if v is None:
      out.append(None)
      continue
    if isinstance(v, bool) or not isinstance(v, (int, float)):
      raise ManifestError(f"{where}: field 'word_starts'[{i}] must be a "
                          f"number or null, got {v!r}")
    if v < last:
      raise ManifestError(f"{where}: field 'word_starts'[{i}] = {v} is "
                          f"before an earlier word's start ({last}) or "
                          "below 0")
    out.append(float(v))
    last = float(v)
  return tuple(out)


def read_manifest(path: str) -> Iterator[Conversation]:
  """Conversations of a JSONL manifest, in file order (see module doc)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ManifestError(f"{path}: manifest file does not exist")
  base_dir = os.path.dirname(os.path.abspath(path))
  seen: dict[str, int] = {}
  # Bytes in, surrogateescape out: a transcript that is not valid UTF-8
  # rejects that one turn (``bad_text``) instead of the whole manifest.
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      where = f"{path}:{lineno}"
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise ManifestError(f"{where}: not valid JSON ({e})") from None
      conv = parse_conversation(obj, base_dir, where)
      if conv.conversation_id in seen:
        raise ManifestError(
            f"{where}: conversation_id {conv.conversation_id!r} already "
            f"used on line {seen[conv.conversation_id]}")
      seen[conv.conversation_id] = lineno
      yield conv


def check_text(turn: Turn) -> str:
  """The stripped transcript, or TurnRejected (empty / not valid UTF-8)."""
  try:
    turn.text.encode("utf-8")
  except UnicodeEncodeError as e:
    raise TurnRejected(turn.audio, "bad_text",
                       f"transcript is not valid UTF-8 ({e.reason})") from None
  text = turn.text.strip()
  if not text:
    raise TurnRejected(turn.audio, "empty_text", "transcript is empty")
  return text


def _frame_range(turn: Turn, info) -> tuple[int, int]:
  """[first, last) frames of the turn's segment, checked against the file."""
  seconds = info.frames / info.samplerate
  start = 0.0 if turn.start is None else turn.start
  end = seconds if turn.end is None else turn.end
  # Half a frame of slack: end times are often rounded to 10 ms.
  slack = 0.5 / info.samplerate + 5e-3
  if start < 0 or end > seconds + slack or end <= start:
    raise TurnRejected(turn.audio, "bad_segment",
                       f"start={turn.start} end={turn.end} outside the "
                       f"file's 0..{seconds:.3f} s or empty")
  if turn.channel is not None and not 0 <= turn.channel < info.channels:
    raise TurnRejected(turn.audio, "bad_segment",
                       f"channel {turn.channel} but the file has "
                       f"{info.channels}")
  return (int(round(start * info.samplerate)),
          min(info.frames, int(round(end * info.samplerate))))


def precheck_turn(turn: Turn) -> None:
  """Checks that need no decoding: text, file, header, segment bounds.

  Cheap enough to run over a whole manifest before a build, so that the
  splits are planned from conversations that still have turns.
  """
  check_text(turn)
  if not os.path.isfile(turn.audio):
    raise TurnRejected(turn.audio, "missing", "no such audio file")
  if os.path.getsize(turn.audio) == 0:
    raise TurnRejected(turn.audio, "empty", "file has zero bytes")
  try:
    info = sf.info(turn.audio)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise TurnRejected(turn.audio, "corrupt", str(e).strip()) from None
  if info.frames <= 0:
    raise TurnRejected(turn.audio, "empty", "zero sample frames")
  _frame_range(turn, info)


def load_turn(turn: Turn, sample_rate: int) -> np.ndarray:
  """The turn's audio as float32 mono at ``sample_rate``, fully checked.

  A whole-file, all-channel turn goes through ``audio.load_audio``. A
  segment or single channel is read by frame range (a one-hour recording is
  not decoded for every one of its turns) and checked with
  ``audio.check_audio`` on the samples as stored, as load_audio would.
  """
  precheck_turn(turn)
  try:
    if turn.start is None and turn.end is None and turn.channel is None:
      return audio_lib.load_audio(turn.audio, sample_rate)
    info = sf.info(turn.audio)
    first, last = _frame_range(turn, info)
    try:
      data, sr = sf.read(turn.audio, start=first, stop=last, dtype="float32",
                         always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
      raise audio_lib.AudioError(turn.audio, "corrupt", str(e).strip()) from e
    if turn.channel is not None:
      data = data[:, turn.channel:turn.channel + 1]
    audio_lib.check_audio(data, sr, turn.audio)
    return audio_lib.resample(data.mean(axis=1), sr, sample_rate)
  except audio_lib.AudioError as e:
    raise TurnRejected(turn.audio, e.reason, e.detail) from None
  except FileNotFoundError as e:   # deleted between precheck and read
    raise TurnRejected(turn.audio, "missing", str(e)) from None
