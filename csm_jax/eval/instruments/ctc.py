"""The recognizer's alphabet and CTC decoding.

Targets are the characters of the normalized transcript
(``text_metrics.normalize``): index 0 is the CTC blank, then space,
apostrophe and a-z. Characters outside the alphabet (digits, letters with
accents after normalization) are dropped from targets, so a corpus with such
text still trains; ``unknown_fraction`` reports how much was dropped.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from csm_jax.eval.text_metrics import normalize

BLANK = 0
ALPHABET = "_ 'abcdefghijklmnopqrstuvwxyz"   # "_" stands for the blank
VOCAB = len(ALPHABET)
_INDEX = {c: i for i, c in enumerate(ALPHABET) if i != BLANK}


def encode(text: str) -> np.ndarray:
  """int32 label ids of a transcript (normalized first; no blanks)."""
  return np.asarray([_INDEX[c] for c in normalize(text) if c in _INDEX],
                    np.int32)


def unknown_fraction(texts: Sequence[str]) -> float:
  """Share of normalized characters that fall outside the alphabet."""
  total = bad = 0
  for t in texts:
    n = normalize(t)
    total += len(n)
    bad += sum(c not in _INDEX for c in n)
  return bad / total if total else 0.0


def decode_ids(ids: Sequence[int]) -> str:
  """Text of label ids (no CTC collapsing)."""
  return "".join(ALPHABET[i] for i in ids if i != BLANK)


def greedy_ids(frame_ids: Sequence[int]) -> list[int]:
  """Best-path CTC collapse: merge runs of one id, then drop blanks."""
  out, prev = [], None
  for i in np.asarray(frame_ids).reshape(-1).tolist():
    if i != prev and i != BLANK:
      out.append(i)
    prev = i
  return out


def greedy_decode(log_probs: np.ndarray, length: int | None = None) -> str:
  """Text of the best path through (frames, VOCAB) scores, spaces tidied."""
  scores = np.asarray(log_probs)
  if length is not None:
    scores = scores[:length]
  text = decode_ids(greedy_ids(np.argmax(scores, axis=-1)))
  return " ".join(text.split())
