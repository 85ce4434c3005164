"""Statistics of the listening test: the exact binomial preference test and
its sample sizes, bootstrap intervals of the mean CMOS, Wilcoxon tests and
trap-pair checks. Pure functions of arrays; ``report`` applies them."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def p_two_sided(k, n):
  """Exact two-sided binomial p-value of k successes in n under p = 1/2.

  The null is symmetric, so doubling the smaller tail is exactly what
  ``scipy.stats.binomtest`` computes; this form is vectorized over k and n.
  """
  k, n = np.asarray(k), np.asarray(n)
  tail = np.minimum(stats.binom.cdf(k, n, 0.5), stats.binom.sf(k - 1, n, 0.5))
  return np.minimum(1.0, 2.0 * tail)


def preference(signed) -> dict:
  """Wins/losses/ties of ours and the exact binomial test on non-ties."""
  s = np.asarray(signed)
  wins, losses = int((s > 0).sum()), int((s < 0).sum())
  n = wins + losses
  out = {"wins": wins, "losses": losses, "ties": int((s == 0).sum()),
         "n_nontie": n, "ours_preferred": None, "ci95": None, "p_value": None}
  if n:
    test = stats.binomtest(wins, n, 0.5)
    ci = test.proportion_ci(0.95, method="exact")
    out.update(ours_preferred=wins / n, p_value=float(test.pvalue),
               ci95=[float(ci.low), float(ci.high)])
  return out


def significant_from(target: float = 0.6, alpha: float = 0.05,
                     n_max: int = 5000) -> int | None:
  """Smallest n from which on an observed ``target`` share of non-tie wins
  (at least ceil(target * n) of n) is significant, two-sided, at ``alpha``.

  "From which on": the integer steps of ceil make significance flicker for
  a while below that n (e.g. 56 of 92 is significant, 64 of 105 is not).
  """
  n = np.arange(1, n_max + 1)
  # The epsilon keeps 0.6 * 5 from rounding up to 4 wins.
  k = np.ceil(target * n - 1e-9)
  sig = p_two_sided(k, n) < alpha
  if not sig[-1]:
    return None
  misses = np.flatnonzero(~sig)
  return int(misses[-1]) + 2 if misses.size else 1


def power(n: int, true_p: float = 0.6, alpha: float = 0.05) -> float:
  """Chance that the exact two-sided test at ``alpha`` rejects p = 1/2 with
  n non-tie judgments when ours is really preferred at ``true_p``."""
  k = np.arange(n + 1)
  reject = p_two_sided(k, n) < alpha
  return float(stats.binom.pmf(k[reject], n, true_p).sum())


def n_for_power(true_p: float = 0.6, alpha: float = 0.05, target: float = 0.8,
                n_max: int = 1000) -> tuple[int | None, int | None]:
  """(first n with power >= target, n from which on power stays >= target).

  Power of an exact test is a saw-tooth in n, hence the two answers.
  """
  ok = np.array([power(n, true_p, alpha) >= target
                 for n in range(n_max + 1)])
  if not ok.any():
    return None, None
  first = int(np.argmax(ok))
  misses = np.flatnonzero(~ok)
  stable = int(misses[-1]) + 1 if misses[-1] < n_max else None
  return first, stable


def bootstrap_mean_ci(scores, raters, items, over: str = "both",
                      reps: int = 2000, seed: int = 0,
                      level: float = 0.95) -> list[float] | None:
  """Percentile interval of the mean score, resampling raters, items or both.

  ``both`` is the two-way (raters x items) bootstrap: raters and items are
  drawn independently with replacement and an answer counts as often as its
  rater times its item were drawn, so both sources of variance show.
  """
  if over not in ("raters", "items", "both"):
    raise ValueError(f"over must be raters, items or both, got {over!r}")
  s = np.asarray(scores, float)
  if s.size == 0:
    return None
  r_code = np.unique(np.asarray(raters), return_inverse=True)[1]
  i_code = np.unique(np.asarray(items), return_inverse=True)[1]
  nr, ni = r_code.max() + 1, i_code.max() + 1
  rng = np.random.default_rng(seed)
  means, chunk = [], max(1, min(reps, 2_000_000 // s.size))
  for start in range(0, reps, chunk):
    b = min(chunk, reps - start)
    w = np.ones((b, s.size))
    if over in ("raters", "both"):
      w *= rng.multinomial(nr, np.full(nr, 1 / nr), size=b)[:, r_code]
    if over in ("items", "both"):
      w *= rng.multinomial(ni, np.full(ni, 1 / ni), size=b)[:, i_code]
    total = w.sum(1)
    # A draw can miss every answered (rater, item) cell; it has no mean.
    keep = total > 0
    means.append((w[keep] @ s) / total[keep])
  means = np.concatenate(means)
  lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
  return [float(lo), float(hi)]


def wilcoxon(scores) -> dict:
  """Wilcoxon signed-rank test of a median of 0; zeros dropped (Wilcoxon's
  own rule). p is None when nothing but zeros is left."""
  s = np.asarray(scores, float)
  nz = s[s != 0]
  out = {"n": int(s.size), "n_nonzero": int(nz.size), "statistic": None,
         "p_value": None}
  if nz.size:
    with warnings.catch_warnings():
      # Few samples: scipy warns that its normal approximation is rough.
      warnings.simplefilter("ignore")
      res = stats.wilcoxon(nz)
    out.update(statistic=float(res.statistic), p_value=float(res.pvalue))
  return out


def trap_check(raters, scores, threshold: float = 2.0) -> dict[str, dict]:
  """Per rater: trap count, mean and mean |score|, and whether flagged.

  Both sides of a trap are the same audio, so the honest answer is 0; a
  mean |score| of ``threshold`` or more ("B better" on identical audio)
  marks a rater who is not listening, or not hearing.
  """
  out = {}
  raters, scores = np.asarray(raters), np.asarray(scores, float)
  for r in sorted(set(raters.tolist())):
    x = scores[raters == r]
    mean_abs = float(np.abs(x).mean())
    out[r] = {"n": int(x.size), "mean": float(x.mean()),
              "mean_abs": mean_abs, "flagged": mean_abs >= threshold}
  return out
