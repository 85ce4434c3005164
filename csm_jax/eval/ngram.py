"""A word n-gram model with interpolated absolute discounting.

Experiment 1's text-only baseline: how well can the preceding *words*
(no audio) predict the next word? Trained on the training transcripts;
queried for the most likely next word among a candidate set.
"""

from __future__ import annotations

import collections
from typing import Iterable, Sequence


class NGram:
  """Order-n counts with interpolated absolute discounting (d = 0.75)."""

  def __init__(self, order: int = 3, discount: float = 0.75):
    self.order, self.d = order, discount
    self.counts = [collections.defaultdict(collections.Counter)
                   for _ in range(order)]

  def fit(self, sentences: Iterable[Sequence[str]]) -> "NGram":
    for words in sentences:
      seq = ["<s>"] * (self.order - 1) + list(words)
      for i in range(self.order - 1, len(seq)):
        for k in range(self.order):
          ctx = tuple(seq[i - k:i])
          self.counts[k][ctx][seq[i]] += 1
    return self

  def prob(self, history: Sequence[str], word: str) -> float:
    seq = ["<s>"] * (self.order - 1) + list(history)
    vocab = max(len(self.counts[0][()]), 1)
    p = 1.0 / vocab
    for k in range(self.order):
      ctx = tuple(seq[len(seq) - k:]) if k else ()
      c = self.counts[k].get(ctx)
      if not c:
        continue
      total = sum(c.values())
      kept = max(c.get(word, 0) - self.d, 0.0) / total
      p = kept + self.d * len(c) / total * p
    return p

  def predict(self, history: Sequence[str], candidates: Sequence[str]) -> str:
    return max(candidates, key=lambda w: self.prob(history, w))
