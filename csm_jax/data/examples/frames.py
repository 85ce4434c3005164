"""CSM's row layout for conversations: turns -> rows, context trimming, packing.

A turn becomes its speaker-tagged text rows (text column only) followed by
its audio frames (audio columns only) and, when it is complete, one all-zero
frame that marks the end of speech. Training and generation both build
prompts here, so the model sees at inference exactly the layout it learned.

With the prosody stream (``ProsodyLayout``) every audio row also carries
the frame's prosody tokens (F0 id, energy id) and its turn's style id in
``prosody_*`` fields, present where ``prosody_mask`` is set: the extra
column of the frame. The end-of-speech frame is unvoiced at energy 0.
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

  def n_rows(self, eos: bool) -> int:
    f = 0 if self.codes is None else len(self.codes) + int(eos)
    return len(self.text_ids) + f


@dataclasses.dataclass(frozen=True)
class ProsodyLayout:
  """The ids the prosody column needs beyond a turn's own tokens."""

  unvoiced: int        # F0 id of unvoiced frames (and of end of speech)
  unknown_style: int   # style id of a turn whose style is not given


PROSODY_FIELDS = ("prosody_f0", "prosody_energy", "prosody_style",
                  "prosody_mask")


class ContextTrimmed(UserWarning):
  """Oldest context turns were dropped to fit the model's sequence."""


def _prosody_rows(turn: Turn, t_len: int, f: int, layout: ProsodyLayout,
                  eos: bool) -> dict:
  n = t_len + f
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
    f0[t_len:t_len + frames], energy[t_len:t_len + frames] = tf0, ten
    if eos:
      f0[t_len + frames] = layout.unvoiced
    present[t_len:] = True
  return {"prosody_f0": f0, "prosody_energy": energy, "prosody_style": style,
          "prosody_mask": present}


def turn_rows(turn: Turn, n_codebooks: int, eos: bool = True,
              prosody: ProsodyLayout | None = None) -> dict:
  """Rows of one turn: audio (T, N), text (T,), mask (T, N+1), loss (T,),
  and the ``PROSODY_FIELDS`` (T,) when ``prosody`` is given."""
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
    out.update(_prosody_rows(turn, t_len, f, prosody, eos))
  return out


def trim_context(context: Sequence[Turn], current: Turn, max_rows: int,
                 reserve: int = 0, eos: bool = True) -> list[Turn]:
  """Drops the oldest context turns until everything fits ``max_rows``.

  ``reserve`` rows are kept free (frames to generate). Warns, never fails,
  unless the current turn alone does not fit.
  """
  budget = max_rows - reserve - current.n_rows(eos)
  if budget < 0:
    raise ValueError(f"the turn needs {current.n_rows(eos) + reserve} rows "
                     f"but the model holds {max_rows}")
  kept = list(context)
  while kept and sum(t.n_rows(eos) for t in kept) > budget:
    kept.pop(0)
  if len(kept) < len(context):
    warnings.warn(f"context trimmed: dropped the {len(context) - len(kept)} "
                  f"oldest of {len(context)} turns to fit {max_rows} rows",
                  ContextTrimmed, stacklevel=2)
  return kept


def conversation_rows(turns: Sequence[Turn], n_codebooks: int,
                      eos: bool = True,
                      prosody: ProsodyLayout | None = None) -> dict:
  """Concatenated rows of turns, positions from 0, all in segment 1."""
  parts = [turn_rows(t, n_codebooks, eos, prosody) for t in turns]
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
         "text_tokens": np.zeros((seq_len,), np.int32),
         "mask": np.zeros((seq_len, n_cb + 1), bool),
         "positions": np.zeros((seq_len,), np.int32),
         "segment_ids": np.zeros((seq_len,), np.int32),
         "loss_mask": np.zeros((seq_len,), bool)}
  row = 0
  for key in PROSODY_FIELDS:
    if key in examples[0]:
      out[key] = np.zeros((seq_len,), examples[0][key].dtype)
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
