"""``--latency_budget_ms``: the quality that fits a time-to-first-audio budget.

The research plan asks generation to trade fidelity for latency as a
conversation's pace requires. Here the trade is the number of codebooks
generated (``Sampling.n_levels``: fewer levels, fewer depth-decoder steps
per frame, coarser audio; see docs/speed.md) and, when asked, speculative
depth decoding. ``choose_levels`` measures, on the machine it runs on and
with the loaded model, the time to first audio (prompt, first chunk and
its codec decode, compiled shapes excluded) for each level count from all
of them down to one, and picks the most levels whose median fits the
budget; when none does it takes one level and says the budget is not met.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from csm_jax.inference.generator import Generator, Sampling

REPEATS = 3


class LatencyBudget:
  """What ``choose_levels`` measured and chose."""

  def __init__(self, budget_ms: float, levels: int, measured_ms: dict,
               met: bool):
    self.budget_ms, self.levels = budget_ms, levels
    self.measured_ms, self.met = measured_ms, met

  def line(self) -> str:
    table = ", ".join(f"{k} levels {v:.0f} ms"
                      for k, v in sorted(self.measured_ms.items(),
                                         reverse=True))
    verdict = ("fits" if self.met else "is not met even with 1 level; "
               "using 1")
    return (f"latency budget {self.budget_ms:.0f} ms to first audio "
            f"{verdict}: chose {self.levels} level(s) (measured here: "
            f"{table})")

  def to_json(self) -> dict:
    return {"budget_ms": self.budget_ms, "levels": self.levels,
            "met": self.met, "first_audio_ms": {
                str(k): round(v, 1) for k, v in self.measured_ms.items()}}


def _first_audio_ms(gen: Generator, text: str, speaker: int,
                    s: Sampling) -> float:
  t0 = time.perf_counter()
  for _ in gen.stream(text, speaker, (), s):
    return 1e3 * (time.perf_counter() - t0)
  return float("inf")


def choose_levels(gen: Generator, sampling: Sampling, budget_ms: float,
                  text: str, speaker: int = 0) -> LatencyBudget:
  """The most levels whose time to first audio fits ``budget_ms``."""
  if budget_ms <= 0:
    raise ValueError(f"--latency_budget_ms must be > 0, got {budget_ms}")
  probe = dataclasses.replace(
      sampling, max_seconds=sampling.frames_per_call * gen.frame_seconds,
      min_seconds=0.0)
  measured = {}
  for k in range(gen.n, 0, -1):
    s = dataclasses.replace(probe, n_levels=None if k == gen.n else k)
    _first_audio_ms(gen, text, speaker, s)          # compiles this k
    measured[k] = float(np.median([_first_audio_ms(gen, text, speaker, s)
                                   for _ in range(REPEATS)]))
    if measured[k] <= budget_ms:
      return LatencyBudget(budget_ms, k, measured, True)
  return LatencyBudget(budget_ms, 1, measured, False)
