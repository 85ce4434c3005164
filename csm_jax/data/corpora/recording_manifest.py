"""Manifests of long recordings with their transcripts, and their checks.

A recordings manifest is a JSONL file, one recording per line::

  {"recording_id": "meeting-3", "audio": "wav/meeting-3.flac",
   "transcript": "txt/meeting-3.txt",          # or "text": "A: Hi. ..."
   "split": "train", "num_speakers": 2}         # both optional

``audio`` is any file libsndfile reads; ``transcript`` a UTF-8 text file
(paths relative to the manifest's folder, or absolute). A transcript is
*tagged* when every non-empty line starts with a speaker tag (``A: ...``,
``Dr Who: ...``): each line is then one speaker's stretch of speech, in
speaking order. Otherwise it is plain text and the speakers are found by
clustering (``num_speakers`` fixes their number; ``"tagged": false`` reads
a tagged-looking transcript as plain text).

A broken manifest (bad JSON, a missing or mistyped field, a duplicate id)
raises ``RecordingsError`` naming file, line and field. A recording whose
*files* are bad is rejected with one ``RecordingRejected`` reason naming
the file (``REASONS``): ``missing_audio`` (a transcript without its audio),
``missing_transcript`` (audio without its transcript), ``corrupt`` (audio
the decoder cannot read), ``empty_audio``, ``empty_transcript``,
``bad_text`` (not UTF-8). Builds report those and go on with the rest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Iterator

import soundfile as sf

from csm_jax.config.errors import UserError

REASONS = ("missing_audio", "missing_transcript", "corrupt", "empty_audio",
           "empty_transcript", "bad_text")
SPLITS = ("train", "validation")
# "A:", "Speaker 2:", "Dr. Who:" at a line's start; a URL's "http:" or a
# clock's "10:30" is not a tag (no space after the colon / digits only).
_TAG = re.compile(r"^\s*([^\W\d][\w .'-]{0,31}?)\s*:\s+(\S.*)$")


class RecordingsError(UserError, ValueError):
  """The recordings manifest is malformed, or nothing in it could be used."""


class RecordingRejected(Exception):
  """One recording is unusable; ``reason`` is one of ``REASONS``."""

  def __init__(self, path: str, reason: str, detail: str = ""):
    if reason not in REASONS:
      raise ValueError(f"unknown rejection reason {reason!r}; expected one "
                       f"of {REASONS}")
    self.path, self.reason, self.detail = str(path), reason, detail
    super().__init__(line(path, reason, detail))


def line(path: str, reason: str, detail: str = "") -> str:
  """The one line a rejected recording is reported with."""
  why = reason.replace("_", " ") + (f": {detail}" if detail else "")
  return f"recording rejected: {why} ({path})"


@dataclasses.dataclass(frozen=True)
class Recording:
  recording_id: str
  audio: str                  # absolute path
  transcript: str | None      # absolute path, or None when given inline
  text: str | None            # inline transcript
  split: str | None = None
  num_speakers: int | None = None
  tagged: bool | None = None  # None: detect
  source: str = "<memory>"    # "recordings.jsonl:3", for messages

  @property
  def transcript_name(self) -> str:
    return self.transcript or f"{self.source} (inline text)"


@dataclasses.dataclass(frozen=True)
class Line:
  """One line of a transcript: its speaker tag (None if plain) and text."""
  speaker: str | None
  text: str


def _field(obj: dict, key: str, types, where: str, required: bool = True):
  if key not in obj or obj[key] is None:
    if required:
      raise RecordingsError(f"{where}: missing field {key!r}")
    return None
  value = obj[key]
  # bool is an int subclass; true/false is never a valid count here.
  if (isinstance(value, bool) and types is not bool) or not isinstance(
      value, types):
    name = getattr(types, "__name__", str(types))
    raise RecordingsError(f"{where}: field {key!r} must be {name}, got "
                          f"{type(value).__name__} {value!r}")
  return value


def parse_recording(obj, base_dir: str, where: str = "<memory>") -> Recording:
  """One manifest line (already JSON-decoded) as a Recording."""
  if not isinstance(obj, dict):
    raise RecordingsError(f"{where}: expected a JSON object, got "
                          f"{type(obj).__name__}")
  rid = _field(obj, "recording_id", str, where)
  if not rid.strip():
    raise RecordingsError(f"{where}: field 'recording_id' is empty")
  audio = _field(obj, "audio", str, where)
  transcript = _field(obj, "transcript", str, where, required=False)
  text = _field(obj, "text", str, where, required=False)
  if transcript is not None and text is not None:
    raise RecordingsError(f"{where}: give 'transcript' (a file) or 'text', "
                          "not both")
  split = _field(obj, "split", str, where, required=False)
  if split is not None and split not in SPLITS:
    raise RecordingsError(f"{where}: field 'split' must be one of {SPLITS}, "
                          f"got {split!r}")
  n = _field(obj, "num_speakers", int, where, required=False)
  if n is not None and n < 1:
    raise RecordingsError(f"{where}: field 'num_speakers' must be >= 1")
  resolve = lambda p: os.path.normpath(os.path.join(base_dir, p))
  return Recording(rid, resolve(audio),
                   None if transcript is None else resolve(transcript),
                   text, split, n, _field(obj, "tagged", bool, where,
                                          required=False), where)


def read_manifest(path: str) -> list[Recording]:
  """Recordings of a JSONL manifest, in file order (see module doc)."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise RecordingsError(f"{path}: recordings manifest does not exist")
  base = os.path.dirname(os.path.abspath(path))
  out, seen = [], {}
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    for lineno, raw in enumerate(f, 1):
      if not raw.strip():
        continue
      where = f"{path}:{lineno}"
      try:
        obj = json.loads(raw)
      except json.JSONDecodeError as e:
        raise RecordingsError(f"{where}: not valid JSON ({e})") from None
      rec = parse_recording(obj, base, where)
      if rec.recording_id in seen:
        raise RecordingsError(f"{where}: recording_id {rec.recording_id!r} "
                              f"already used on line {seen[rec.recording_id]}")
      seen[rec.recording_id] = lineno
      out.append(rec)
  if not out:
    raise RecordingsError(f"{path}: the manifest lists no recording")
  return out


def read_text(rec: Recording) -> str:
  """The transcript's text, or RecordingRejected naming the file."""
  if rec.text is not None:
    text = rec.text
  elif rec.transcript is None:
    raise RecordingRejected(rec.audio, "missing_transcript",
                            f"{rec.source} names no transcript")
  elif not os.path.isfile(rec.transcript):
    raise RecordingRejected(rec.transcript, "missing_transcript",
                            f"no transcript file for {rec.audio}")
  else:
    with open(rec.transcript, "rb") as f:
      data = f.read()
    try:
      text = data.decode("utf-8")
    except UnicodeDecodeError as e:
      raise RecordingRejected(rec.transcript, "bad_text",
                              f"not UTF-8 ({e.reason} at byte {e.start})"
                              ) from None
  if not text.strip():
    raise RecordingRejected(rec.transcript_name, "empty_transcript",
                            "no words in it")
  return text


def check_audio_file(rec: Recording) -> sf._SoundFileInfo:
  """The audio file's header, or RecordingRejected naming the file."""
  if not os.path.isfile(rec.audio):
    raise RecordingRejected(rec.audio, "missing_audio",
                            f"no audio file for {rec.transcript_name}")
  if os.path.getsize(rec.audio) == 0:
    raise RecordingRejected(rec.audio, "empty_audio", "zero bytes")
  try:
    info = sf.info(rec.audio)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise RecordingRejected(rec.audio, "corrupt",
                            f"the decoder cannot read it: {str(e).strip()}"
                            ) from None
  if info.frames <= 0:
    raise RecordingRejected(rec.audio, "empty_audio", "zero sample frames")
  return info


def check(rec: Recording) -> str:
  """Every check that needs no decoding; returns the transcript text."""
  check_audio_file(rec)
  return read_text(rec)


def parse_transcript(text: str, tagged: bool | None = None) -> list[Line]:
  """Lines of a transcript, tagged (``A: ...`` on every line) or plain.

  Plain text keeps its line breaks as ``Line``s with no speaker; they carry
  no meaning beyond word order.
  """
  lines = [raw.strip() for raw in text.splitlines() if raw.strip()]
  matches = [_TAG.match(raw) for raw in lines]
  if tagged is None:
    tagged = bool(lines) and all(matches)
  if not tagged:
    return [Line(None, raw) for raw in lines]
  out = []
  for raw, m in zip(lines, matches):
    if m is None:
      # Asked to read tags: an untagged line continues the last speaker.
      out.append(Line(out[-1].speaker if out else "?", raw))
    else:
      out.append(Line(" ".join(m.group(1).split()), m.group(2).strip()))
  return out


def iter_checked(recordings) -> Iterator[tuple[Recording, str | None,
                                               RecordingRejected | None]]:
  """(recording, transcript text or None, rejection or None) for each."""
  for rec in recordings:
    try:
      yield rec, check(rec), None
    except RecordingRejected as e:
      yield rec, None, e
