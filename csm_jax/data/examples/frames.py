"""CSM's row layout for conversations: turns -> rows, context trimming, packing.

A turn becomes its speaker-tagged text rows (text column only) followed by
its audio frames (audio columns only) and, when it is complete, one all-zero
frame that marks the end of speech. Training and generation both build
prompts here, so the model sees at inference exactly the layout it learned.

With the aligned text stream (``lead`` given, ``config.text_stream``) a
turn is its speaker-tag rows, then one row per frame of its text stream:
row r carries the token spoken at frame r (``Turn.stream``) and the audio
of frame r - lead, so the text leads the audio by ``lead`` rows; after the
last token the text column holds the end-of-text id (``EOS_ID``) and the
end-of-speech frame comes ``lead`` rows later. The text column is then
(T, 1 + ahead): the row's token and the ``ahead`` tokens after it
(end-of-text past the last; pad, id 0, on the tag rows). ``advance`` says, for each
row, whether the next row moves on to the next token (-1: no target).

With the prosody stream (``ProsodyLayout``) every audio row also carries
the frame's prosody tokens (F0 id, energy id) and its turn's style id in
``prosody_*`` fields, present where ``prosody_mask`` is set: the extra
column of the frame. The end-of-speech frame is unvoiced at energy 0. On
the aligned text stream the column follows the audio: frame r's tokens sit
on row r + lead with its codes, not on the row of its text token.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Sequence

import numpy as np


@dataclasses.dataclass
class Turn:
  """One turn: tokenized text (speaker tag included) and codec frames."""

  text_ids: np.ndarray  # (L,) int
  codes: np.ndarray | None  # (F, N) int, or None for the turn to generate
  trained: bool = False  # its audio is a training target
  # (F0 ids (F,), energy ids (F,)) per frame, with the prosody stream.
  prosody: tuple | None = None
  style: int | None = None  # the turn's style id; None: unknown
  # Aligned text stream: (token ids (K,), token index of each frame (F,)).
  stream: tuple | None = None

  def n_rows(self, eos: bool, lead: int | None = None) -> int:
    f = 0 if self.codes is None else len(self.codes) + int(eos)
    if lead is not None and self.codes is not None:
      f += lead
    return len(self.text_ids) + f


@dataclasses.dataclass(frozen=True)
class ProsodyLayout:
  """The ids the prosody column needs beyond a turn's own tokens."""

  unvoiced: int        # F0 id of unvoiced frames (and of end of speech)
  unknown_style: int   # style id of a turn whose style is not given


END_OF_TEXT = 3  # the text column after a turn's last token (EOS_ID)
NO_TARGET = -1

PROSODY_FIELDS = ("prosody_f0", "prosody_energy", "prosody_style",
                  "prosody_mask")


class ContextTrimmed(UserWarning):
  """Oldest context turns were dropped to fit the model's sequence."""


def _prosody_rows(turn: Turn, start: int, n: int, layout: ProsodyLayout,
                  eos: bool) -> dict:
  """The prosody column of a turn's ``n`` rows, its frames from row
  ``start`` on (then its end-of-speech frame when ``eos``)."""
  f0 = np.zeros((n,), np.int32)
  energy = np.zeros((n,), np.int32)
  style = np.full((n,), layout.unknown_style if turn.style is None
                  else turn.style, np.int32)
  present = np.zeros((n,), bool)
  if turn.codes is not None:
    frames = len(turn.codes)
    if turn.prosody is None:
      raise ValueError("a turn with audio needs its prosody tokens when the "
                       "prosody stream is on")
    tf0, ten = (np.asarray(a, np.int32) for a in turn.prosody)
    if tf0.shape != (frames,) or ten.shape != (frames,):
      raise ValueError(f"prosody tokens of shapes {tf0.shape}, {ten.shape} "
                       f"for {frames} frames")
    f0[start:start + frames], energy[start:start + frames] = tf0, ten
    if eos:
      f0[start + frames] = layout.unvoiced
    present[start:] = True
  return {"prosody_f0": f0, "prosody_energy": energy, "prosody_style": style,
          "prosody_mask": present}


def aligned_turn_rows(turn: Turn, n_codebooks: int, lead: int,
                      ahead: int = 0,
                      prosody: ProsodyLayout | None = None) -> dict:
  """Rows of one turn on the aligned text stream (module docstring), with
  ``advance`` (T,) targets, and the ``PROSODY_FIELDS`` when ``prosody`` is
  given; a turn without codes is its tag rows only."""
  t_len = len(turn.text_ids)
  if turn.codes is None:
    f = 0
  else:
    codes = np.asarray(turn.codes, np.int32)
    if codes.ndim != 2 or codes.shape[1] != n_codebooks:
      raise ValueError(f"turn codes have shape {codes.shape}; expected "
                       f"(frames, {n_codebooks})")
    f = len(codes)
    if turn.stream is None:
      raise ValueError("a turn with audio needs its aligned text stream "
                       "(Turn.stream) on model.text_stream='aligned'")
    ids, index = (np.asarray(a) for a in turn.stream)
    if index.shape != (f,):
      raise ValueError(f"text stream of {index.shape} frames for {f}")
  n = t_len + (f + lead + 1 if f else 0)
  audio = np.zeros((n, n_codebooks), np.int32)
  text = np.zeros((n, 1 + ahead), np.int32)
  mask = np.zeros((n, n_codebooks + 1), bool)
  advance = np.full((n,), NO_TARGET, np.int32)
  loss = np.zeros((n,), bool)
  text[:t_len, 0] = turn.text_ids
  mask[:, -1] = True
  if f:
    r0 = t_len
    padded = np.concatenate([ids, np.full((ahead,), END_OF_TEXT, ids.dtype)])
    for j in range(1 + ahead):
      text[r0:r0 + f, j] = padded[index + j]
    text[r0 + f:] = END_OF_TEXT
    audio[r0 + lead:r0 + lead + f] = codes
    mask[r0 + lead:, :-1] = True   # the frames and the end-of-speech frame
    # Row r's state chooses row r + 1's token: a new one where the index
    # moves (and into end-of-text after the last frame), else the same.
    step = np.zeros((f + lead + 1,), np.int32)
    step[1:f] = np.diff(index) > 0
    step[f] = 1
    advance[r0:r0 + f + lead] = step[1:]
    if turn.trained:
      loss[r0 + lead:] = True
    else:
      advance[:] = NO_TARGET
  out = {"audio_tokens": audio, "text_tokens": text, "mask": mask,
         "loss_mask": loss, "advance": advance}
  if prosody is not None:   # on the frames' rows, as their codes
    out.update(_prosody_rows(turn, t_len + lead, n, prosody, eos=True))
  return out


def turn_rows(turn: Turn, n_codebooks: int, eos: bool = True,
              prosody: ProsodyLayout | None = None,
              lead: int | None = None, ahead: int = 0) -> dict:
  """Rows of one turn: audio (T, N), text (T,), mask (T, N+1), loss (T,),
  and the ``PROSODY_FIELDS`` (T,) when ``prosody`` is given; with ``lead``
  the aligned text stream's rows (``aligned_turn_rows``)."""
  if lead is not None:
    if not eos:
      raise ValueError("the aligned text stream always ends a turn with its "
                       "end-of-speech frame")
    return aligned_turn_rows(turn, n_codebooks, lead, ahead, prosody)
  t_len = len(turn.text_ids)
  codes = (np.zeros((0, n_codebooks), np.int32) if turn.codes is None
           else np.asarray(turn.codes, np.int32))
  if codes.ndim != 2 or codes.shape[1] != n_codebooks:
    raise ValueError(f"turn codes have shape {codes.shape}; expected "
                     f"(frames, {n_codebooks})")
  if turn.codes is not None and eos:
    codes = np.concatenate([codes, np.zeros((1, n_codebooks), np.int32)])
  f = len(codes)
  audio = np.zeros((t_len + f, n_codebooks), np.int32)
  audio[t_len:] = codes
  text = np.zeros((t_len + f,), np.int32)
  text[:t_len] = turn.text_ids
  mask = np.zeros((t_len + f, n_codebooks + 1), bool)
  mask[:t_len, -1] = True
  mask[t_len:, :-1] = True
  loss = np.zeros((t_len + f,), bool)
  if turn.trained:
    loss[t_len:] = True
  out = {"audio_tokens": audio, "text_tokens": text, "mask": mask,
         "loss_mask": loss}
  if prosody is not None:
    out.update(_prosody_rows(turn, t_len, t_len + f, prosody, eos))
  return out


def trim_context(context: Sequence[Turn], current: Turn, max_rows: int,
                 reserve: int = 0, eos: bool = True,
                 lead: int | None = None) -> list[Turn]:
  """Drops the oldest context turns until everything fits ``max_rows``.

  ``reserve`` rows are kept free (frames to generate). Warns, never fails,
  unless the current turn alone does not fit.
  """
  budget = max_rows - reserve - current.n_rows(eos, lead)
  if budget < 0:
    raise ValueError(f"the turn needs {current.n_rows(eos, lead) + reserve} "
                     f"rows but the model holds {max_rows}")
  kept = list(context)
  while kept and sum(t.n_rows(eos, lead) for t in kept) > budget:
    kept.pop(0)
  if len(kept) < len(context):
    warnings.warn(f"context trimmed: dropped the {len(context) - len(kept)} "
                  f"oldest of {len(context)} turns to fit {max_rows} rows",
                  ContextTrimmed, stacklevel=2)
  return kept


def conversation_rows(turns: Sequence[Turn], n_codebooks: int,
                      eos: bool = True,
                      prosody: ProsodyLayout | None = None,
                      lead: int | None = None, ahead: int = 0) -> dict:
  """Concatenated rows of turns, positions from 0, all in segment 1."""
  parts = [turn_rows(t, n_codebooks, eos, prosody, lead, ahead)
           for t in turns]
  out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  n = len(out["text_tokens"])
  out["positions"] = np.arange(n, dtype=np.int32)
  out["segment_ids"] = np.ones((n,), np.int32)
  return out


def pack(examples: Sequence[dict], seq_len: int) -> dict:
  """Packs whole examples (each starting at position 0) into one row.

  Examples longer than ``seq_len`` are cut at the end; each gets its own
  segment id; the tail is padding (segment 0).
  """
  n_cb = examples[0]["audio_tokens"].shape[1]
  out = {"audio_tokens": np.zeros((seq_len, n_cb), np.int32),
         "text_tokens": np.zeros((seq_len,) + examples[0]["text_tokens"]
                                 .shape[1:], np.int32),
         "mask": np.zeros((seq_len, n_cb + 1), bool),
         "positions": np.zeros((seq_len,), np.int32),
         "segment_ids": np.zeros((seq_len,), np.int32),
         "loss_mask": np.zeros((seq_len,), bool)}
  row = 0
  for key in PROSODY_FIELDS:
    if key in examples[0]:
      out[key] = np.zeros((seq_len,), examples[0][key].dtype)
  if "advance" in examples[0]:
    out["advance"] = np.full((seq_len,), NO_TARGET, np.int32)
  rows = [k for k in out if k not in ("positions", "segment_ids")]
  for seg, ex in enumerate(examples, start=1):
    k = min(len(ex["text_tokens"]), seq_len - row)
    if k <= 0:
      break
    for key in rows:
      out[key][row:row + k] = ex[key][:k]
    out["positions"][row:row + k] = np.arange(k)
    out["segment_ids"][row:row + k] = seg
    row += k
  return out
