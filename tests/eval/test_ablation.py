"""The ablation table and plot read the arms' quick-suite reports."""

import json

import pytest

from csm_jax.eval import ablation


def _report(path, cer, diff=None):
  est = lambda v: {"value": v, "low": v - 0.05, "high": v + 0.05, "n": 12}
  rows = {"teacher_forced": {"cer": est(cer / 2),
                             "speaker_similarity": est(0.8)},
          "model": {"cer": est(cer), "speaker_similarity": est(-0.1),
                    "end_of_speech_rate": est(0.9),
                    "ended_in_time": est(0.5)}}
  path.mkdir()
  (path / "report.json").write_text(json.dumps(
      {"rows": rows, "compare": {"cer": est(diff)} if diff else None}))
  return str(path)


def test_table_and_plot_show_every_arm(tmp_path):
  a = _report(tmp_path / "a", 0.4, diff=-0.2)
  b = _report(tmp_path / "b", 0.6)
  arms = ablation.read_arms([f"aligned={a}", f"prefix={b}"])
  text = ablation.table(arms)
  assert "| aligned | model | 0.400 [0.350, 0.450]" in text
  assert "| prefix | teacher_forced | 0.300" in text
  assert "-0.200 [-0.250, -0.150]" in text   # the paired difference
  other = ablation.read_arms([f"bpe={a}#teacher_forced"])["bpe"]
  assert other["rows"]["model"]["cer"]["value"] == 0.2
  png = tmp_path / "p.png"
  ablation.plot(arms, str(png), "t")
  assert png.stat().st_size > 10_000


def test_a_missing_report_names_the_arm(tmp_path):
  with pytest.raises(ablation.AblationError, match="x=.*report.json"):
    ablation.read_arms([f"x={tmp_path}"])
  with pytest.raises(ablation.AblationError, match="NAME=REPORT_DIR"):
    ablation.read_arms(["nodir"])
