"""Statistics and report of the listening test on data with known answers."""

import json
import math
import os

import numpy as np
import pytest
from scipy import stats

from csm_jax.eval.listening import ListeningError
from csm_jax.eval.listening import analysis
from csm_jax.eval.listening import protocol
from csm_jax.eval.listening import report as report_lib


def test_binomial_p_value_by_hand_and_against_scipy():
  # 9 of 10: P(X >= 9) = (10 + 1) / 1024, doubled.
  assert analysis.p_two_sided(9, 10) == pytest.approx(22 / 1024, rel=1e-12)
  assert analysis.p_two_sided(5, 10) == 1.0
  assert analysis.p_two_sided(0, 6) == pytest.approx(2 / 64)
  for n in (1, 7, 20, 51, 106, 200):
    for k in range(n + 1):
      assert analysis.p_two_sided(k, n) == pytest.approx(
          stats.binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-15)


def test_preference_excludes_ties():
  scores = [3, 1, 2, 1, 1, 2, 3, 1, 2, -1] + [0] * 40
  p = analysis.preference(scores)
  assert (p["wins"], p["losses"], p["ties"], p["n_nontie"]) == (9, 1, 40, 10)
  assert p["ours_preferred"] == pytest.approx(0.9)
  assert p["p_value"] == pytest.approx(22 / 1024)
  lo, hi = p["ci95"]
  assert lo < 0.9 < hi and 0.5 < lo
  assert analysis.preference([0, 0])["p_value"] is None


def test_judgments_needed_for_sixty_percent():
  n = analysis.significant_from(0.6, 0.05)
  assert n == 106
  # The definition, checked directly: 106 on is significant, 105 is not.
  for m in range(n, n + 300):
    assert stats.binomtest(math.ceil(0.6 * m), m).pvalue < 0.05
  assert stats.binomtest(63, 105).pvalue >= 0.05
  first, stable = analysis.n_for_power(0.6, 0.05, 0.8)
  assert 190 <= first <= 210 and first <= stable <= 220
  assert analysis.power(first) >= 0.8 > analysis.power(first - 1)
  assert all(analysis.power(m) >= 0.8 for m in range(stable, stable + 40))
  assert analysis.power(stable - 1) < 0.8


def test_power_against_simulation():
  rng = np.random.default_rng(0)
  wins = rng.binomial(199, 0.6, size=20000)
  sim = np.mean(analysis.p_two_sided(wins, 199) < 0.05)
  assert analysis.power(199) == pytest.approx(sim, abs=0.01)
  # Under the null the exact test never rejects more than alpha.
  assert analysis.power(199, true_p=0.5) <= 0.05


def _panel(n_raters, n_items, rater_sd, item_sd, mean, seed):
  rng = np.random.default_rng(seed)
  ra, it = np.meshgrid(np.arange(n_raters), np.arange(n_items), indexing="ij")
  x = (mean + rater_sd * rng.normal(size=n_raters)[ra]
       + item_sd * rng.normal(size=n_items)[it]
       + rng.normal(size=ra.shape))
  return x.ravel(), ra.ravel(), it.ravel()


@pytest.mark.parametrize("over", ["raters", "items", "both"])
def test_bootstrap_interval_covers_the_known_mean(over):
  x, r, i = _panel(20, 30, 0.3, 0.3, 0.5, seed=1)
  lo, hi = analysis.bootstrap_mean_ci(x, r, i, over, reps=1000, seed=0)
  assert lo < x.mean() < hi
  assert lo < 0.5 < hi
  assert hi - lo < 1.0


def test_two_way_bootstrap_is_widest_and_coverage_is_near_nominal():
  x, r, i = _panel(15, 15, 0.5, 0.5, 0.0, seed=2)
  width = {o: np.diff(analysis.bootstrap_mean_ci(x, r, i, o, 800, 0))[0]
           for o in ("raters", "items", "both")}
  assert width["both"] > max(width["raters"], width["items"])
  hits = 0
  for seed in range(40):
    x, r, i = _panel(15, 15, 0.5, 0.5, 0.0, seed=100 + seed)
    lo, hi = analysis.bootstrap_mean_ci(x, r, i, "both", 400, seed)
    hits += lo < 0.0 < hi
  assert hits >= 32      # ~95% nominal; the two-way bootstrap is conservative


def test_wilcoxon_drops_zeros_and_matches_scipy():
  x = [2, 1, 3, 0, 0, -1, 2, 1, 0, 3, 2]
  w = analysis.wilcoxon(x)
  ref = stats.wilcoxon([v for v in x if v])
  assert (w["n"], w["n_nonzero"]) == (11, 8)
  assert w["p_value"] == pytest.approx(ref.pvalue)
  assert analysis.wilcoxon([0, 0, 0])["p_value"] is None


def test_trap_flagging():
  checks = analysis.trap_check(["a", "a", "b", "b", "c"], [0, 1, 3, -2, 2],
                               threshold=2.0)
  assert [r for r, c in checks.items() if c["flagged"]] == ["b", "c"]
  assert checks["a"]["mean_abs"] == 0.5 and checks["b"]["mean"] == 0.5


def _rows(spec):
  """Answer rows as the store writes them: (rater, item, cond, side, raw)."""
  return [{"session_id": r, "rater_name": r.upper(), "item_id": i,
           "condition": c, "side_a": s, "is_trap": int(s == "trap"),
           "score": raw, "score_ours": protocol.signed_score(raw, s)}
          for r, i, c, s, raw in spec]


def test_report_resigns_flags_and_writes_files(tmp_path):
  spec = []
  for r in ("r1", "r2", "r3"):
    for k in range(10):
      side = "ours" if k % 2 else "baseline"
      # Ours is better by 2 on every pair: raw -2 with ours on A, +2 on B.
      spec.append((r, f"i{k}", "no_context", side, -2 if side == "ours" else 2))
      spec.append((r, f"i{k}", "context", side, 0))
    spec.append((r, "i0", "no_context", "trap", 0))
  spec.append(("bad", "i1", "no_context", "ours", 3))   # prefers baseline
  spec.append(("bad", "i1", "context", "trap", 3))
  rep = report_lib.build_report(_rows(spec), {"name": "t", "system": "ours",
                                              "baseline": "gt"}, reps=300)
  assert rep["raters"]["flagged"] == ["bad"]
  nc = rep["results"]["no_context"]
  assert nc["cmos"]["mean"] == pytest.approx(2.0)
  assert nc["preference"]["wins"] == 30 and nc["preference"]["losses"] == 0
  assert rep["results"]["context"]["preference"]["ties"] == 30
  assert rep["results"]["context"]["preference"]["p_value"] is None
  assert rep["results"]["overall"]["cmos"]["mean"] == pytest.approx(1.0)
  assert rep["results_all_raters"]["no_context"]["preference"]["losses"] == 1
  assert rep["target"]["met"]
  assert rep["sample_size"]["n_significant"] == 106
  assert rep["traps"]["n"] == 4 and rep["traps"]["mean_abs"] == 0.75
  paths = report_lib.write_report(rep, str(tmp_path / "out"))
  with open(paths["json"]) as f:
    assert json.load(f)["raters"]["flagged"] == ["bad"]
  with open(paths["md"]) as f:
    md = f.read()
  assert "**106**" in md and "| no_context | 30 |" in md and "bad" in md
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(paths["png"]) > 5000


def test_report_needs_answers():
  with pytest.raises(ListeningError, match="no answers"):
    report_lib.build_report([], {})
