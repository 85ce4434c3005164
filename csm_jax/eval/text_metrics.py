"""Transcript comparison: one normalization, and CER/WER through ``jiwer``.

Every reference and hypothesis goes through ``normalize`` first (lowercase;
punctuation other than in-word apostrophes becomes a space; runs of spaces
collapse), so a recognizer is never charged for punctuation it cannot hear.
``cer``/``wer`` are corpus-level rates (total edits over total reference
length, as jiwer computes them); ``edits`` gives one utterance's edit count
and reference length, so a corpus rate can be bootstrapped over utterances.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import jiwer

UNITS = ("char", "word")

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'",
                              "`": "'"})
_NOT_KEPT = re.compile(r"[^\w' ]+")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'+|'+(?!\w)")


def normalize(text: str) -> str:
  """Lowercase words separated by single spaces (see module docstring)."""
  if isinstance(text, bytes):
    text = text.decode("utf-8")
  text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).lower()
  text = _NOT_KEPT.sub(" ", text.replace("_", " "))
  # Quotes around a word are punctuation; "chloe's" keeps its apostrophe.
  text = _LOOSE_APOSTROPHE.sub(" ", text)
  return " ".join(text.split())


def _pairs(refs, hyps) -> tuple[list[str], list[str]]:
  if isinstance(refs, (str, bytes)):
    refs, hyps = [refs], [hyps]
  refs, hyps = list(refs), list(hyps)
  if len(refs) != len(hyps):
    raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
  return [normalize(r) for r in refs], [normalize(h) for h in hyps]


def edits(ref: str, hyp: str, unit: str = "char") -> tuple[int, int]:
  """(substitutions + deletions + insertions, reference length) of one pair.

  ``unit`` is "char" (spaces count as characters, as in jiwer's CER) or
  "word". An empty reference has length 0 and every hypothesis unit counts
  as an insertion.
  """
  if unit not in UNITS:
    raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
  (r,), (h,) = _pairs([ref], [hyp])
  if unit == "char":
    if not r:
      return len(h), 0
    out = jiwer.process_characters(r, h)
  else:
    if not r:
      return len(h.split()), 0
    out = jiwer.process_words(r, h)
  n = out.hits + out.substitutions + out.deletions
  return int(out.substitutions + out.deletions + out.insertions), int(n)


def edit_counts(refs: Sequence[str], hyps: Sequence[str],
                unit: str = "char") -> tuple[list[int], list[int]]:
  """Per-utterance edit counts and reference lengths (see ``edits``)."""
  pairs = list(zip(*_pairs(refs, hyps)))
  got = [edits(r, h, unit) for r, h in pairs]
  return [e for e, _ in got], [n for _, n in got]


def _rate(refs, hyps, unit: str) -> float:
  e, n = edit_counts(refs, hyps, unit)
  total = sum(n)
  if total == 0:
    return 0.0 if sum(e) == 0 else float("inf")
  return sum(e) / total


def cer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
  """Character error rate over all pairs (total edits / total length)."""
  return _rate(*_pairs(refs, hyps), "char")


def wer(refs: Sequence[str] | str, hyps: Sequence[str] | str) -> float:
  """Word error rate over all pairs (total edits / total words)."""
  return _rate(*_pairs(refs, hyps), "word")
