"""Library side of ``python -m csm_jax.generate``: prompts in, wavs out.

The generator comes from ``csm_jax.inference.loading.load_generator``.
Context files are JSON lists of turns
``{"speaker": 0, "text": "...", "audio": "turn.wav"}``; batch files are JSONL,
one request per line ``{"text": ..., "speaker": ..., "context": [...],
"out": "name.wav"}``. Request files are read and checked before the model
loads (``read_context_specs``, ``read_requests``), so a typo costs no
compile; a bad file is a ``RequestError`` naming the file, line and field.
Generation that yields no audio is a ``GenerationError``, never a
silent 44-byte wav.

With the prosody stream, ``read_prosody_flags`` checks the control flags
(emotion, intensity, style, sketch file or reference wav, pace) before the
model loads, ``control_for`` turns them into a request's ``Control`` once
it has, and every wav gets its plan-against-realized F0 plot beside it
(``NAME.prosody.png``).
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import os
import sys

import numpy as np

from csm_jax.audio.io import AudioError, load_audio, write_wav
from csm_jax.config import text_stream
from csm_jax.config.errors import UserError
from csm_jax.data import features
from csm_jax.data import prosody_tokens
from csm_jax.data.prosody_tokens import ProsodyError
from csm_jax.inference import prosody_control
from csm_jax.inference.aligned import check_streaming
from csm_jax.inference.generator import (ContextTurn, Control, Generator,
                                         Sampling)


class RequestError(UserError, ValueError):
  """A context or batch file, or an output path, is unusable; names it."""


class GenerationError(UserError, RuntimeError):
  """A request cannot produce audio (too long, or no frame came out)."""


def _load_json(path: str, what: str):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise RequestError(f"{path}: {what} is not valid JSON: {e.msg} at line "
                       f"{e.lineno} column {e.colno}") from None
  except UnicodeDecodeError as e:
    raise RequestError(f"{path}: {what} is not UTF-8 text ({e.reason})"
                       ) from None


def _check_turns(turns, where: str) -> list[dict]:
  if not isinstance(turns, list):
    raise RequestError(f"{where}: expected a JSON list of turns, got "
                       f"{type(turns).__name__}")
  for i, t in enumerate(turns):
    if not isinstance(t, dict):
      raise RequestError(f"{where}: turn {i} is not an object")
    for field in ("speaker", "text"):
      if field not in t:
        raise RequestError(f"{where}: turn {i} lacks '{field}'")
    _speaker(t["speaker"], f"{where}: turn {i}")
    if t.get("audio") is not None and not isinstance(t["audio"], str):
      raise RequestError(f"{where}: turn {i}: 'audio' must be a wav path")
    if t.get("emotion") is not None and not isinstance(t["emotion"], str):
      raise RequestError(f"{where}: turn {i}: 'emotion' must be a name")
  return turns


def _speaker(value, where: str) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, str)):
    raise RequestError(f"{where}: 'speaker' must be an integer, got "
                       f"{value!r}")
  try:
    speaker = int(value)
  except ValueError:
    raise RequestError(f"{where}: 'speaker' must be an integer, got "
                       f"{value!r}") from None
  if speaker < 0:
    raise RequestError(f"{where}: 'speaker' must be >= 0, got {speaker}")
  return speaker


def read_context_specs(path: str | None) -> list[dict]:
  """The turns of a context file, checked, without reading their audio."""
  if not path:
    return []
  return _check_turns(_load_json(path, "the context file"), path)


def jsonl_turns(path: str, expected: str):
  """(where, object) for each non-blank line of a JSONL file of turns or
  requests, each an object with a non-empty 'text'; ``where`` names the
  line for the caller's own checks, ``expected`` what an object holds."""
  with open(path, encoding="utf-8") as f:
    for n, line in enumerate(f, start=1):
      if not line.strip():
        continue
      where = f"{path} line {n}"
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise RequestError(f"{where}: not valid JSON: {e.msg} at column "
                           f"{e.colno}") from None
      if not isinstance(obj, dict):
        raise RequestError(f"{where}: expected an object with {expected}")
      if not isinstance(obj.get("text"), str) or not obj["text"].strip():
        raise RequestError(f"{where}: 'text' must be a non-empty string")
      yield where, obj


def read_requests(path: str) -> list[dict]:
  """The requests of a JSONL batch file, each line checked."""
  reqs = []
  for where, r in jsonl_turns(path, "'text'"):
    _speaker(r.get("speaker", 0), where)
    _check_turns(r.get("context", []), f"{where}: 'context'")
    if r.get("out") is not None and (
        not isinstance(r["out"], str) or not r["out"].strip()):
      raise RequestError(f"{where}: 'out' must be a file name")
    reqs.append(r)
  if not reqs:
    raise RequestError(f"{path}: the batch file holds no request")
  return reqs


def check_output(path: str, flag: str = "--out") -> None:
  """Refuses an output wav path that cannot be written as a file."""
  if os.path.isdir(path):
    raise RequestError(f"{flag}={path} is a directory; give a file name, "
                       f"e.g. {os.path.join(path, 'out.wav')}")
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise RequestError(f"{flag}={path}: {parent} is a file, not a directory")


def parse_turns(turns, sample_rate: int, base: str, where: str) -> list:
  """ContextTurns of checked turn dicts, their audio read and resampled."""
  out = []
  for i, t in enumerate(_check_turns(turns, where)):
    audio = None
    if t.get("audio"):
      p = t["audio"] if os.path.isabs(t["audio"]) else os.path.join(base, t["audio"])
      audio = load_audio(p, sample_rate)
    out.append(ContextTurn(_speaker(t["speaker"], f"{where}: turn {i}"),
                           str(t["text"]), audio=audio,
                           emotion=t.get("emotion") or None))
  return out


def read_context(path: str | None, sample_rate: int, base: str = "") -> list:
  if not path:
    return []
  return parse_turns(read_context_specs(path), sample_rate,
                     os.path.dirname(path) or base, path)


@dataclasses.dataclass
class ProsodyFlags:
  """The prosody control flags, checked (files read) before the model loads."""

  emotion: str | None = None
  intensity: float = 0.5
  style: int | None = None
  sketch_path: str | None = None
  sketch: dict | None = None          # the sketch file's JSON
  ref_path: str | None = None
  ref_audio: np.ndarray | None = None  # at features.F0_SR
  pace: float = 1.0

  def any(self) -> bool:
    return (self.emotion is not None or self.style is not None
            or self.sketch is not None or self.ref_audio is not None
            or self.pace != 1.0)


def read_prosody_flags(emotion=None, intensity: float = 0.5, style=None,
                       prosody=None, prosody_from=None,
                       pace: float = 1.0) -> ProsodyFlags:
  """Checks the control flags; reads the sketch file and reference wav."""
  if prosody and prosody_from:
    raise ProsodyError("give --prosody=sketch.json or --prosody_from=ref.wav, "
                       "not both")
  if emotion is not None and style is not None:
    raise ProsodyError("give --emotion (with --intensity) or --style, not "
                       "both")
  if not 0.0 <= intensity <= 1.0:
    raise ProsodyError(f"--intensity={intensity}: must be in [0, 1]")
  if style is not None and style < 0:
    raise ProsodyError(f"--style={style}: style tokens are >= 0")
  flags = ProsodyFlags(emotion=emotion or None, intensity=float(intensity),
                       style=style, pace=prosody_control.check_pace(pace))
  if prosody:
    if not os.path.isfile(prosody):
      raise ProsodyError(f"--prosody={prosody}: no such sketch file")
    flags.sketch_path = prosody
    flags.sketch = _load_json(prosody, "the prosody sketch")
    # Everything but the binning (which needs the model's stats) now.
    prosody_control.sketch_fields(flags.sketch, prosody)
  if prosody_from:
    flags.ref_path = prosody_from
    try:
      flags.ref_audio = load_audio(prosody_from, features.F0_SR)
    except FileNotFoundError:
      raise ProsodyError(f"--prosody_from={prosody_from}: no such audio "
                         "file") from None
    except AudioError as e:
      raise ProsodyError(f"--prosody_from={prosody_from}: cannot be read as "
                         f"a reference ({e})") from None
  return flags


def control_for(gen: Generator, flags: ProsodyFlags, speaker: int,
                sampling: Sampling | None = None, text: str | None = None
                ) -> Control | None:
  """The request's ``Control`` (None when no flag asks for one).

  With ``sampling`` and ``text`` a sketch is also checked against the
  room the request has (``check_sketch``).
  """
  if not flags.any():
    return None
  if gen.bins is None and flags.emotion is not None and not (
      flags.style is not None or flags.sketch is not None
      or flags.ref_audio is not None or flags.pace != 1.0) and \
      text_stream.emotion_tag(gen.config.model):
    gen.tokenizer.emotion_token_id(flags.emotion)   # unknown names fail here
    return Control(flags.emotion)
  if gen.bins is None:
    raise ProsodyError(
        "--emotion, --style, --prosody, --prosody_from and --pace need a "
        "model trained with the prosody stream "
        "(--config.model.prosody.enabled=true); this one has none")
  sketch = None
  rate = gen.codec.frame_rate
  if flags.sketch is not None:
    sketch = prosody_control.parse_sketch(flags.sketch, gen.bins, speaker,
                                          rate, where=flags.sketch_path)
  elif flags.ref_audio is not None:
    contour = prosody_tokens.frame_contour(flags.ref_audio, features.F0_SR,
                                           rate)
    sketch = prosody_control.sketch_from_contour(
        contour, gen.bins, where=f"--prosody_from={flags.ref_path}")
  if sketch is not None and len(sketch) * gen.frame_seconds > 60.0:
    raise ProsodyError(f"{flags.sketch_path or flags.ref_path}: the sketch "
                       f"lasts {len(sketch) * gen.frame_seconds:.1f} s; "
                       "at most 60 s can be followed")
  if flags.emotion is not None:
    gen.bins.emotion_index(flags.emotion)   # an unknown name fails here
  if flags.style is not None and flags.style >= gen.bins.unknown_style:
    raise ProsodyError(f"--style={flags.style}: the model has style tokens "
                       f"0..{gen.bins.unknown_style - 1}")
  if sketch is not None and sampling is not None and text is not None:
    check_sketch(gen, sketch, sampling, text, speaker,
                 flags.sketch_path or f"--prosody_from={flags.ref_path}")
  return Control(flags.emotion, flags.intensity, flags.style, sketch)


def check_sketch(gen: Generator, sketch: prosody_control.Sketch,
                 sampling: Sampling, text: str, speaker: int,
                 where: str) -> None:
  """Refuses a sketch that cannot be followed to its end.

  Its frames (after ``--pace``) must fit in ``--max_seconds`` and, beside
  the turn's text rows, in the length the model was trained on; a longer
  sketch would be cut without a word.
  """
  frames = len(sketch.paced(sampling.pace))
  paced = f" at --pace={sampling.pace:g}" if sampling.pace != 1.0 else ""
  cap = max(1, int(round(sampling.max_seconds / gen.frame_seconds)))
  if frames > cap:
    raise ProsodyError(
        f"{where}: the sketch lasts {frames} frames "
        f"({frames * gen.frame_seconds:.2f} s{paced}) but --max_seconds="
        f"{sampling.max_seconds:g} allows {cap}; raise --max_seconds or "
        "shorten the sketch")
  if text == "-":   # streamed in (--text=-): its rows are not known yet
    return
  rows = len(gen.tokenizer.encode_turn(speaker, text))
  room = gen.cache_len - rows
  if frames > room:
    raise ProsodyError(
        f"{where}: the sketch lasts {frames} frames{paced} but the model "
        f"holds {gen.cache_len} rows and the text takes {rows}, so "
        f"at most {max(room, 0)} frames ({max(room, 0) * gen.frame_seconds:.2f}"
        " s) can be followed; shorten the sketch or the text")


def write_contour_plot(gen: Generator, wav_path: str, audio: np.ndarray,
                       plan: np.ndarray | None, speaker: int) -> dict:
  """The plan-vs-realized F0 PNG beside ``wav_path``; its correlation."""
  if gen.bins is None or plan is None or not len(plan):
    return {}
  realized = prosody_tokens.frame_contour(audio, gen.codec.sample_rate,
                                          gen.codec.frame_rate, len(plan))
  png = prosody_control.contour_png_path(wav_path)
  prosody_control.plot_contour(png, plan[:, 0], realized, gen.bins, speaker,
                               gen.codec.frame_rate,
                               title=os.path.basename(wav_path))
  r = prosody_control.follow_correlation(plan[:, 0], realized.log_f0,
                                         gen.bins, speaker)
  return {"prosody_png": png,
          "plan_realized_f0_r": None if not np.isfinite(r) else round(r, 4),
          # The frames the correlation is over: few means little evidence.
          "plan_realized_f0_frames": prosody_control.followed_frames(
              plan[:, 0], realized.log_f0, gen.bins)}


def check_sampling(gen: Generator, sampling: Sampling) -> None:
  """What only the loaded model can check: ``--levels`` against it."""
  n = sampling.n_levels
  if n is not None and not 1 <= n <= gen.n:
    raise RequestError(f"--levels={n} but the model predicts {gen.n} "
                       f"codebooks (need 1 <= --levels <= {gen.n})")


def check_fits(gen: Generator, text: str, speaker: int, sampling: Sampling,
               where: str = "--text") -> None:
  """Refuses a text whose rows leave no room for the audio asked for.

  Context is trimmed to fit (oldest turns first), but the turn to speak is
  not: its text rows and at least ``min_seconds`` of frames (one frame when
  0) must fit the model's trained length.
  """
  rows = len(gen.tokenizer.encode_turn(speaker, text))
  need = max(1, int(round(sampling.min_seconds / gen.frame_seconds)))
  if rows + need > gen.max_len:
    raise GenerationError(
        f"{where}: the text takes {rows} rows of the {gen.max_len} the model "
        f"was trained on, leaving room for {max(gen.max_len - rows, 0)} of "
        f"the {need} frames asked for; shorten the text ({len(text)} "
        "characters)")


def _no_audio(what: str, sampling: Sampling,
              written: str = "nothing written") -> str:
  hint = ("raise --min_seconds to forbid an early end of speech"
          if sampling.min_seconds <= 0 else "check the checkpoint")
  return (f"{what}: no audio was generated (the model ended speech at the "
          f"first frame); {written}; {hint}")


def stdin_pieces(fd: int | None = None):
  """Standard input's text as it arrives (a pipe's writes, not lines)."""
  fd = sys.stdin.fileno() if fd is None else fd
  dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
  while True:
    data = os.read(fd, 4096)
    text = dec.decode(data, final=not data)
    if text:
      yield text
    if not data:
      return


def speak(gen: Generator, text: str, speaker: int, context, sampling: Sampling,
          out: str, progress=sys.stderr, control: Control | None = None
          ) -> dict:
  """Generates one utterance to ``out`` with a progress line per chunk;
  ``text`` "-" streams it in from standard input (``stdin_pieces``)."""
  check_sampling(gen, sampling)
  if text == "-":
    check_streaming(gen.config)
    source = gen.stream_text(stdin_pieces(), speaker, context, sampling,
                             control)
  else:
    check_fits(gen, text, speaker, sampling)
    source = gen.stream(text, speaker, context, sampling, control)
  chunks = []
  for chunk in source:
    chunks.append(chunk)
    seconds = sum(len(c.codes) for c in chunks) * gen.frame_seconds
    if seconds > 0:
      print(f"\r{seconds:5.2f} s of audio in {chunk.elapsed_s:5.2f} s "
            f"(RTF {chunk.elapsed_s / seconds:.2f})", end="", file=progress,
            flush=True)
  print(file=progress)
  frames = int(sum(len(c.codes) for c in chunks))
  audio = (np.concatenate([c.audio for c in chunks]) if chunks
           else np.zeros((0,), np.float32))
  if frames == 0 or len(audio) == 0:
    raise GenerationError(_no_audio(out, sampling))
  write_wav(out, np.clip(audio, -1.0, 1.0), gen.codec.sample_rate)
  seconds = len(audio) / gen.codec.sample_rate
  compute = chunks[-1].elapsed_s if chunks else 0.0
  res = {"out": out, "seconds": seconds, "compute_s": compute,
         "first_chunk_s": chunks[0].elapsed_s if chunks else 0.0,
         "frames": frames}
  if chunks[0].prosody is not None:
    plan = np.concatenate([c.prosody for c in chunks])
    style = gen.bins.style_of(chunks[0].style)
    res["style"] = None if style is None else {"emotion": style[0],
                                               "intensity_bin": style[1]}
    res.update(write_contour_plot(gen, out, audio, plan, speaker))
  return res


def run_batch(gen: Generator, path: str, out_dir: str, sampling: Sampling,
              batch_size: int = 4, reqs: list[dict] | None = None,
              prosody: ProsodyFlags | None = None) -> list[dict]:
  """Generates every request of a JSONL file, ``batch_size`` at a time.

  A request that yields no audio writes no file; when any did, the others
  are written and a ``GenerationError`` names the empty ones.
  """
  reqs = read_requests(path) if reqs is None else reqs
  check_sampling(gen, sampling)
  base = os.path.dirname(path)
  names = [r.get("out") or f"{i:05d}.wav" for i, r in enumerate(reqs)]
  for i, r in enumerate(reqs):
    check_fits(gen, r["text"], int(r.get("speaker", 0)), sampling,
               f"{path} line {i + 1}")
    check_output(os.path.join(out_dir, names[i]), f"{path} line {i + 1}: out")
  # Every request's controls, checked before anything is generated.
  controls = None
  if prosody is not None and prosody.any():
    controls = [control_for(gen, prosody, int(r.get("speaker", 0)), sampling,
                            r["text"]) for r in reqs]
  os.makedirs(out_dir, exist_ok=True)
  results, empty = [], []
  for start in range(0, len(reqs), batch_size):
    group = reqs[start:start + batch_size]
    batch = [(r["text"], int(r.get("speaker", 0)),
              parse_turns(r.get("context", []), gen.codec.sample_rate, base,
                          f"{path} line {start + i + 1}"))
             for i, r in enumerate(group)]
    audio = [[] for _ in group]
    plans = [[] for _ in group]
    group_controls = (None if controls is None
                      else controls[start:start + batch_size])
    for step in gen.stream_batch(batch, sampling, group_controls):
      for i, chunk in enumerate(step):
        if chunk is not None:
          audio[i].append(chunk.audio)
          if chunk.prosody is not None:
            plans[i].append(chunk.prosody)
    for i, _ in enumerate(group):
      name = names[start + i]
      x = np.concatenate(audio[i]) if audio[i] else np.zeros((0,), np.float32)
      if len(x) == 0:
        empty.append(name)
        continue
      write_wav(os.path.join(out_dir, name), np.clip(x, -1, 1),
                gen.codec.sample_rate)
      row = {"out": name, "seconds": len(x) / gen.codec.sample_rate}
      if plans[i]:
        row.update(write_contour_plot(gen, os.path.join(out_dir, name), x,
                                      np.concatenate(plans[i]), batch[i][1]))
      results.append(row)
    print(f"{min(start + batch_size, len(reqs))}/{len(reqs)} requests done",
          file=sys.stderr, flush=True)
  if empty:
    raise GenerationError(_no_audio(
        f"{len(empty)} of {len(reqs)} requests of {path} ({', '.join(empty)})",
        sampling, written="no file written for them"))
  return results
