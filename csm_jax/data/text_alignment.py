"""Where each text token is spoken: token timings from phoneme events.

The aligned text stream (``model.text_stream="aligned"``) puts on every
audio frame the token being spoken. Training takes the timings from the
corpus: the phonemes eSpeak spoke and their start times, or, for a real
corpus, its words' start times (a manifest's ``word_starts``, or the CTC
alignment of long recordings) with each word's phonemes spread over it
(``turn_timing``). The tokens come
from the text alone (``PhonemeTokenizer``, as generation makes them), so
the two sequences differ a little (a word eSpeak says differently in
context, the gaps between words some voices leave, modifier marks);
``token_starts`` matches them with ``difflib`` and gives each token the
start of its event, spreading unmatched runs evenly between their matched
neighbours. ``frame_index`` then says which token each codec frame
carries, every token at least one frame, in order.
"""

from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np

from csm_jax.config.errors import UserError
from csm_jax.data import phonemes as phoneme_lib
from csm_jax.data.phoneme_tokenizer import word_events


class AlignmentError(UserError, ValueError):
  """A turn's tokens cannot be laid on its frames (more tokens than frames)."""


def _event_symbols(symbols: Sequence[str], starts) -> tuple[list, np.ndarray]:
  """Events folded to classes, modifier marks dropped, runs of pauses one."""
  out, times = [], []
  for s, t in zip(symbols, np.asarray(starts, np.float64)):
    b = phoneme_lib.base_symbol(s)
    if b == ";":
      continue
    if b == phoneme_lib.PAUSE and out and out[-1] == phoneme_lib.PAUSE:
      continue
    out.append(b)
    times.append(t)
  return out, np.asarray(times, np.float64)


def token_starts(tokenizer, token_ids: Sequence[int],
                 event_symbols: Sequence[str], event_starts,
                 duration: float) -> np.ndarray:
  """(K,) start seconds of each of ``token_ids`` (a ``PhonemeTokenizer``'s
  stream tokens, no specials), non-decreasing, within ``[0, duration]``."""
  mine = [tokenizer.symbol(t) for t in token_ids]
  theirs, times = _event_symbols(event_symbols, event_starts)
  k = len(mine)
  out = np.full((k,), np.nan)
  sm = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
  for tag, i1, i2, j1, j2 in sm.get_opcodes():
    if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
      out[i1:i2] = times[j1:j2]
    elif tag == "replace":
      end = times[j2] if j2 < len(times) else duration
      out[i1:i2] = np.linspace(times[j1], end, i2 - i1, endpoint=False)
  # Tokens eSpeak did not speak (deleted): evenly between the neighbours.
  known = np.flatnonzero(~np.isnan(out))
  if not len(known):
    return np.linspace(0.0, duration, k, endpoint=False)
  anchors_x = np.concatenate([[-1], known, [k]])
  anchors_t = np.concatenate([[0.0], out[known], [duration]])
  idx = np.arange(k)
  out = np.where(np.isnan(out), np.interp(idx, anchors_x, anchors_t), out)
  return np.clip(np.maximum.accumulate(out), 0.0, duration)


def frame_index(starts, n_frames: int, frame_seconds: float) -> np.ndarray:
  """(n_frames,) int32: the token each frame carries, from token start
  times; every token holds at least one frame and none is skipped."""
  k = len(starts)
  if k > n_frames:
    raise AlignmentError(f"{k} tokens do not fit {n_frames} frames")
  if k == 0:
    raise AlignmentError("no tokens to lay on the frames")
  first = np.rint(np.asarray(starts, np.float64) / frame_seconds).astype(int)
  first[0] = 0
  for i in range(1, k):        # at least one frame per token ...
    first[i] = max(first[i], first[i - 1] + 1)
  for i in range(k - 1, -1, -1):   # ... and every token before the end
    first[i] = min(first[i], n_frames - (k - i))
  out = np.zeros((n_frames,), np.int32)
  out[first[1:]] = 1
  return np.cumsum(out).astype(np.int32)


def timed_index(tokenizer, ids, timing, n_frames: int,
                frame_seconds: float) -> np.ndarray:
  """The token each frame carries: from ``timing`` (phoneme symbols,
  start seconds) matched to ``ids`` when given, else spread evenly."""
  if timing is None:
    return uniform_index(len(ids), n_frames)
  starts = token_starts(tokenizer, ids, *timing, n_frames * frame_seconds)
  return frame_index(starts, n_frames, frame_seconds)


def uniform_index(n_tokens: int, n_frames: int) -> np.ndarray:
  """Tokens spread evenly over the frames: the layout of a context turn
  whose timings are unknown."""
  starts = np.arange(n_tokens) * (n_frames / max(n_tokens, 1))
  return frame_index(starts, n_frames, 1.0)


def turn_timing(rec) -> tuple[list[str], np.ndarray] | None:
  """Phoneme events (symbols, start seconds) of a stored turn: the
  phonemes its corpus recorded, else its words' phonemes from their
  recorded starts (``phoneme_tokenizer.word_events``); None when neither
  is known."""
  from csm_jax.data.corpora import turns  # pylint: disable=g-import-not-at-top
  found = turns.phoneme_alignment(rec)
  if found is not None or "word_starts" not in rec:
    return found
  word_starts = np.asarray(rec["word_starts"], np.float64)
  if not word_starts.size:
    return None
  duration = float(rec["end_s"]) - float(rec["start_s"])
  return word_events(turns.record_text(rec["text"]), word_starts, duration)


class Aligner:
  """Lays a corpus turn's tokens on its frames (``DialogueExamples``)."""

  def __init__(self, tokenizer, lead: int, frame_seconds: float,
               where: str = "", ahead: int = 0, emotion_tag: bool = False):
    if getattr(tokenizer, "kind", None) != "phoneme":
      raise AlignmentError(
          "the aligned text stream needs the phoneme tokenizer "
          "(data.tokenizer_type='phoneme'); data.tokenizer points at "
          f"another kind ({getattr(tokenizer, 'path', tokenizer)})")
    self.tokenizer, self.lead = tokenizer, int(lead)
    self.frame_seconds, self.where = frame_seconds, where
    self.ahead, self.emotion_tag = int(ahead), bool(emotion_tag)

  def tag_rows(self, speaker: int, emotion: str | None = None) -> list[int]:
    """``[bos] [speaker]``, then the emotion tag with ``model.emotion_tag``."""
    return self.tokenizer.tag_rows(speaker, emotion, self.emotion_tag)

  def stream(self, rec, text: str, n_frames: int):
    """(token ids (K,), token index of each frame (F,)), or None when the
    turn's tokens do not fit its frames."""
    found = turn_timing(rec)
    if found is None:
      raise AlignmentError(
          f"{self.where or 'the corpus'} records no phoneme or word "
          "timings for a turn, which the aligned text stream trains from: "
          "rebuild it with this version (python -m csm_jax.prepare), give "
          "the manifest's turns 'word_starts', or use "
          "model.text_stream='prefix'")
    ids = np.asarray(self.tokenizer.encode(text), np.int32)
    try:
      return ids, timed_index(self.tokenizer, ids, found, n_frames,
                              self.frame_seconds)
    except AlignmentError:
      return None
