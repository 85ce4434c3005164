"""Bootstrap intervals for every figure a report gives.

A figure is either a mean of per-item values or a ratio of sums (corpus
CER is edits / reference characters, summed over utterances). Items are
resampled with replacement (percentile bootstrap, 95% by default, seeded),
so the interval says how much the figure would move on another draw of
prompts of the same kind. ``paired`` bootstraps the difference of two
systems on the same items, which is what ``--compare`` reports.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A figure with its bootstrap interval over ``n`` items."""

  value: float
  low: float
  high: float
  n: int

  def to_json(self) -> dict:
    return {"value": self.value, "low": self.low, "high": self.high,
            "n": self.n}

  def __str__(self) -> str:
    if not np.isfinite(self.value):
      return "n/a"
    return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
  finite = samples[np.isfinite(samples)]
  if not len(finite):
    return float("nan"), float("nan")
  a = (1.0 - level) / 2
  return float(np.quantile(finite, a)), float(np.quantile(finite, 1 - a))


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def mean(values: Sequence[float], level: float = 0.95,
         resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
  """The mean of per-item values with its bootstrap interval (NaNs dropped)."""
  x = np.asarray([v for v in values if np.isfinite(v)], np.float64)
  if not len(x):
    return Estimate(float("nan"), float("nan"), float("nan"), 0)
  boot = x[_indices(len(x), resamples, seed)].mean(axis=1)
  lo, hi = _interval(boot, level)
  return Estimate(float(x.mean()), lo, hi, len(x))


def ratio(numerators: Sequence[float], denominators: Sequence[float],
          level: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
          seed: int = 0) -> Estimate:
  """sum(num) / sum(den) over items, items resampled together."""
  num = np.asarray(numerators, np.float64)
  den = np.asarray(denominators, np.float64)
  if len(num) != len(den):
    raise ValueError("numerators and denominators differ in length")
  if not len(num) or den.sum() <= 0:
    return Estimate(float("nan"), float("nan"), float("nan"), len(num))
  idx = _indices(len(num), resamples, seed)
  with np.errstate(invalid="ignore", divide="ignore"):
    boot = num[idx].sum(axis=1) / den[idx].sum(axis=1)
  lo, hi = _interval(boot, level)
  return Estimate(float(num.sum() / den.sum()), lo, hi, len(num))


def correlation(x: Sequence[float], y: Sequence[float], level: float = 0.95,
                resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
  """Pearson correlation of paired values, pairs resampled together."""
  a = np.asarray(x, np.float64)
  b = np.asarray(y, np.float64)
  keep = np.isfinite(a) & np.isfinite(b)
  a, b = a[keep], b[keep]
  if len(a) < 3 or a.std() == 0 or b.std() == 0:
    return Estimate(float("nan"), float("nan"), float("nan"), len(a))
  idx = _indices(len(a), resamples, seed)
  xa, xb = a[idx], b[idx]
  xa = xa - xa.mean(axis=1, keepdims=True)
  xb = xb - xb.mean(axis=1, keepdims=True)
  with np.errstate(invalid="ignore", divide="ignore"):
    boot = (xa * xb).sum(1) / np.sqrt((xa ** 2).sum(1) * (xb ** 2).sum(1))
  lo, hi = _interval(boot, level)
  return Estimate(float(np.corrcoef(a, b)[0, 1]), lo, hi, len(a))


def paired(a: Sequence[float], b: Sequence[float], level: float = 0.95,
           resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> Estimate:
  """Mean of a - b over items both systems scored, with its interval."""
  x = np.asarray(a, np.float64)
  y = np.asarray(b, np.float64)
  if len(x) != len(y):
    raise ValueError(f"paired figures need the same items ({len(x)} vs "
                     f"{len(y)})")
  keep = np.isfinite(x) & np.isfinite(y)
  return mean(x[keep] - y[keep], level, resamples, seed)


def paired_ratio(num_a, den_a, num_b, den_b, level: float = 0.95,
                 resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> Estimate:
  """Difference of two ratios of sums on the same items (e.g. CER a - b)."""
  arrays = [np.asarray(v, np.float64) for v in (num_a, den_a, num_b, den_b)]
  n = len(arrays[0])
  if any(len(v) != n for v in arrays):
    raise ValueError("paired ratios need the same items")
  na, da, nb, db = arrays
  if not n or da.sum() <= 0 or db.sum() <= 0:
    return Estimate(float("nan"), float("nan"), float("nan"), n)
  idx = _indices(n, resamples, seed)
  with np.errstate(invalid="ignore", divide="ignore"):
    boot = (na[idx].sum(1) / da[idx].sum(1)) - (nb[idx].sum(1) /
                                                db[idx].sum(1))
  lo, hi = _interval(boot, level)
  return Estimate(float(na.sum() / da.sum() - nb.sum() / db.sum()), lo, hi, n)
