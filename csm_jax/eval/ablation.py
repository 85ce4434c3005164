"""An ablation's table and plot from the quick suite's reports of its arms.

``python -m csm_jax.ablation --arm=NAME=REPORT_DIR ... --out=PNG``
reads each arm's ``report.json`` (``evaluate --suite=quick``), prints a
markdown table of the model row and its teacher-forced ceiling (CER, speaker
similarity, end of speech, ended in time, each with its 95% interval, and
the paired CER difference where the report was made with ``--compare``)
and draws the same as bars with intervals, one group per arm.
"""

from __future__ import annotations

import json
import os

from csm_jax.config.errors import UserError

COLUMNS = (("cer", "CER (lower better)"),
           ("speaker_similarity", "speaker similarity"),
           ("ended_in_time", "ended in time (0.7-1.4x)"))


class AblationError(UserError, ValueError):
  """An arm's report is missing or has no model row; names it."""


def read_arms(specs) -> dict[str, dict]:
  arms = {}
  for spec in specs:
    name, sep, path = spec.partition("=")
    if not sep:
      raise AblationError(f"--arm={spec}: expected NAME=REPORT_DIR")
    # DIR#compare_model: the arm is the report's --compare run.
    path, _, row = path.partition("#")
    f = os.path.join(path, "report.json")
    if not os.path.exists(f):
      raise AblationError(f"--arm={spec}: {f} does not exist (run "
                          "python -m csm_jax.evaluate --suite=quick first)")
    with open(f, encoding="utf-8") as fh:
      data = json.load(fh)
    row = row or "model"
    if row not in data.get("rows", {}):
      raise AblationError(f"{f}: no {row} row")
    if row != "model":   # its own ceiling and paired figures are not here
      data = {"rows": {"model": data["rows"][row]}, "compare": None}
    arms[name] = data
  return arms


def _cell(est) -> str:
  if est is None:
    return "-"
  return f"{est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}]"


def table(arms: dict[str, dict]) -> str:
  lines = ["| arm | row | CER | speaker sim | end of speech | ended in time "
           "| paired CER diff (vs --compare) |", "|---" * 7 + "|"]
  for name, data in arms.items():
    for row in ("teacher_forced", "model"):
      r = data["rows"].get(row)
      if r is None:
        continue
      model = row == "model"
      diff = (data.get("compare") or {}).get("cer") if model else None
      lines.append(
          f"| {name} | {row} | {_cell(r['cer'])} | "
          f"{_cell(r['speaker_similarity'])} | "
          f"{_cell(r.get('end_of_speech_rate')) if model else '-'} | "
          f"{_cell(r.get('ended_in_time')) if model else '-'} | "
          f"{_cell(diff) if diff else '-'} |")
  return "\n".join(lines)


def plot(arms: dict[str, dict], path: str, title: str = "") -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  names = list(arms)
  fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4.2 * len(COLUMNS), 3.6))
  x = np.arange(len(names))
  for ax, (metric, label) in zip(axes, COLUMNS):
    bottom = 0.0
    for k, (row, color) in enumerate((("teacher_forced", "#c0c0c0"),
                                      ("model", "#c44e52"))):
      if metric == "ended_in_time" and row != "model":
        continue
      est = [arms[n]["rows"].get(row, {}).get(metric) for n in names]
      v = np.array([e["value"] if e else np.nan for e in est])
      lo = np.array([e["value"] - e["low"] if e else 0 for e in est])
      hi = np.array([e["high"] - e["value"] if e else 0 for e in est])
      off = (k - 0.5) * 0.38 if metric != "ended_in_time" else 0.0
      ax.bar(x + off, np.nan_to_num(v), 0.36, color=color,
             label=row.replace("_", "-"))
      ax.errorbar(x + off, np.nan_to_num(v), yerr=[lo, hi], fmt="none",
                  ecolor="black", capsize=3)
      for xi, vi in zip(x + off, v):
        if not np.isfinite(vi):
          ax.text(xi, 0.01, "n/a", ha="center", va="bottom", fontsize=7)
      bottom = min(bottom, np.nanmin(np.append(v - lo, 0.0)))
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x)
    ax.set_xticklabels([n.replace(", ", "\n") for n in names], fontsize=8)
    ax.set_title(label, fontsize=10)
    ax.set_ylim(min(0.0, bottom - 0.05), 1)
  axes[0].legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
