"""The numbers that say how good an instrument is: EER, similarity, confusion.

``eer`` is the equal error rate of a verification score: the operating point
where the share of different-speaker trials accepted equals the share of
same-speaker trials rejected, found exactly on the sorted scores (ties are
accepted together) and interpolated linearly between the two thresholds
that bracket it.
"""

from __future__ import annotations

import numpy as np


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Cosine of every row of ``a`` with every row of ``b``."""
  return l2_normalize(a) @ l2_normalize(b).T


def trials(embeddings: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
  """(cosine scores, same-label flags) of every unordered pair i < j."""
  labels = np.asarray(labels)
  sim = cosine_similarity(embeddings, embeddings)
  i, j = np.triu_indices(len(labels), k=1)
  return sim[i, j], labels[i] == labels[j]


def eer(scores, same) -> tuple[float, float]:
  """(equal error rate, threshold); a trial is accepted when score >= it.

  Needs at least one same and one different trial.
  """
  scores = np.asarray(scores, np.float64)
  same = np.asarray(same, bool)
  n_same, n_diff = int(same.sum()), int((~same).sum())
  if n_same == 0 or n_diff == 0:
    raise ValueError(f"EER needs same and different trials; got {n_same} "
                     f"same and {n_diff} different")
  order = np.argsort(-scores, kind="stable")
  s, y = scores[order], same[order]
  # Thresholds at each distinct score, highest first: accept score >= t.
  last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
  far = np.r_[0.0, np.cumsum(~y)[last] / n_diff]       # false accepts
  frr = np.r_[1.0, 1.0 - np.cumsum(y)[last] / n_same]  # false rejects
  thr = np.r_[np.inf, s[last]]
  k = int(np.flatnonzero(far >= frr)[0])  # first point where FAR >= FRR
  if k == 0:
    return 0.0, float(s[0])
  # Crossing of the two curves between points k-1 and k.
  d0, d1 = frr[k - 1] - far[k - 1], far[k] - frr[k]
  w = d0 / (d0 + d1) if d0 + d1 > 0 else 0.0
  rate = far[k - 1] + w * (far[k] - far[k - 1])
  t_prev = thr[k - 1] if np.isfinite(thr[k - 1]) else thr[k]
  return float(rate), float(t_prev + w * (thr[k] - t_prev))


def confusion(true, pred, n_classes: int) -> np.ndarray:
  """(n_classes, n_classes) counts: row = true class, column = predicted."""
  m = np.zeros((n_classes, n_classes), np.int64)
  np.add.at(m, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
  return m
