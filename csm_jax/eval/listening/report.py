"""The analysis report: statistics of a database's answers, overall and per
condition, written as report.json, report.md and a score histogram PNG."""

from __future__ import annotations

import datetime
import json
import os

import numpy as np

from csm_jax.eval.listening import ListeningError
from csm_jax.eval.listening import analysis

SCORES = list(range(-3, 4))
CONDITION_ORDER = ("overall", "no_context", "context")


def _block(rows: list[dict], reps: int, seed: int) -> dict:
  s = np.array([r["score_ours"] for r in rows], float)
  raters = [r["session_id"] for r in rows]
  items = [r["item_id"] for r in rows]
  per_rater = {}
  for r in rows:
    per_rater.setdefault(r["session_id"], []).append(r["score_ours"])
  return {
      "n": len(rows), "n_raters": len(set(raters)), "n_items": len(set(items)),
      "preference": analysis.preference(s),
      "cmos": {
          "mean": float(s.mean()),
          "ci95_raters": analysis.bootstrap_mean_ci(s, raters, items,
                                                    "raters", reps, seed),
          "ci95_items": analysis.bootstrap_mean_ci(s, raters, items, "items",
                                                   reps, seed),
          "ci95_two_way": analysis.bootstrap_mean_ci(s, raters, items, "both",
                                                     reps, seed)},
      # One observation per rater: does the typical rater prefer ours?
      "wilcoxon_over_raters": analysis.wilcoxon(
          [np.mean(v) for v in per_rater.values()]),
      "counts": {str(k): int((s == k).sum()) for k in SCORES},
  }


def _results(rows: list[dict], reps: int, seed: int) -> dict:
  out = {}
  for cond in CONDITION_ORDER:
    sub = [r for r in rows if cond == "overall" or r["condition"] == cond]
    if sub:
      out[cond] = _block(sub, reps, seed)
  return out


def build_report(rows: list[dict], meta: dict, *, trap_threshold: float = 2.0,
                 reps: int = 2000, seed: int = 0, target: float = 0.6,
                 alpha: float = 0.05, power: float = 0.8) -> dict:
  """Everything ``analyze`` reports, as one JSON-ready dict."""
  if not rows:
    raise ListeningError("the database holds no answers yet")
  traps = [r for r in rows if r["is_trap"]]
  rated = [r for r in rows if not r["is_trap"]]
  checks = analysis.trap_check([r["session_id"] for r in traps],
                               [r["score"] for r in traps], trap_threshold)
  flagged = sorted(r for r, c in checks.items() if c["flagged"])
  kept = [r for r in rated if r["session_id"] not in flagged]
  names = {r["session_id"]: r["rater_name"] for r in rows}
  per_rater = []
  for rater in sorted(names):
    mine = [r["score_ours"] for r in rated if r["session_id"] == rater]
    pref = analysis.preference(mine)
    trap = checks.get(rater, {"n": 0, "mean_abs": None, "flagged": False})
    per_rater.append({
        "rater": rater, "name": names[rater], "n": len(mine),
        "mean_cmos": float(np.mean(mine)) if mine else None,
        "wins": pref["wins"], "losses": pref["losses"], "ties": pref["ties"],
        "wilcoxon": analysis.wilcoxon(mine), "trap_n": trap["n"],
        "trap_mean_abs": trap["mean_abs"], "flagged": trap["flagged"]})
  first, stable = analysis.n_for_power(target, alpha, power)
  results = _results(kept, reps, seed) if kept else {}
  overall = results.get("overall", {}).get("preference", {})
  trap_scores = np.array([r["score"] for r in traps], float)
  return {
      "test": {k: meta.get(k) for k in ("name", "system", "baseline")},
      "generated_at": datetime.datetime.now(datetime.timezone.utc)
                      .isoformat(timespec="seconds"),
      "answers": {"total": len(rows), "rated": len(rated), "traps": len(traps),
                  "analysed": len(kept)},
      "raters": {"total": len(names), "flagged": flagged,
                 "trap_threshold": trap_threshold},
      "results": results,
      "results_all_raters": _results(rated, reps, seed) if rated else {},
      "target": {"ours_preferred_at_least": target, "alpha": alpha,
                 "met": bool(overall.get("p_value") is not None
                             and overall["ours_preferred"] >= target
                             and overall["p_value"] < alpha)},
      "sample_size": {
          "target_preference": target, "alpha": alpha, "power": power,
          "n_significant": analysis.significant_from(target, alpha),
          "n_power": first, "n_power_stable": stable,
          "n_nontie_so_far": overall.get("n_nontie", 0)},
      "per_rater": per_rater,
      "traps": {"n": len(traps),
                "mean": float(trap_scores.mean()) if len(traps) else None,
                "mean_abs": (float(np.abs(trap_scores).mean())
                             if len(traps) else None),
                "zero_share": (float((trap_scores == 0).mean())
                               if len(traps) else None),
                "counts": {str(k): int((trap_scores == k).sum())
                           for k in SCORES}},
      "bootstrap": {"reps": reps, "seed": seed},
  }


def _n(count: int, noun: str) -> str:
  return f"{count} {noun}" + ("" if count == 1 else "s")


def _f(x, fmt="{:+.2f}") -> str:
  return "-" if x is None else fmt.format(x)


def _ci(ci) -> str:
  return "-" if ci is None else f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _table(results: dict) -> list[str]:
  lines = ["| condition | judgments | raters | ours preferred (non-ties) | "
           "ties | p (binomial) | CMOS | 95% CI raters | 95% CI items | "
           "95% CI two-way | Wilcoxon p (raters) |", "|" + " --- |" * 11]
  for cond, b in results.items():
    p, c = b["preference"], b["cmos"]
    share = (f"{p['ours_preferred']:.1%} ({p['wins']}/{p['n_nontie']})"
             if p["n_nontie"] else "-")
    lines.append(f"| {cond} | {b['n']} | {b['n_raters']} | {share} | "
                 f"{p['ties']} | {_f(p['p_value'], '{:.3g}')} | "
                 f"{_f(c['mean'])} | {_ci(c['ci95_raters'])} | "
                 f"{_ci(c['ci95_items'])} | {_ci(c['ci95_two_way'])} | "
                 f"{_f(b['wilcoxon_over_raters']['p_value'], '{:.3g}')} |")
  return lines


def markdown(rep: dict, plot: str | None = None) -> str:
  t, ss, tr = rep["test"], rep["sample_size"], rep["traps"]
  lines = [f"# Listening test {t['name']}: {t['system']} vs {t['baseline']}",
           "", f"Generated {rep['generated_at']}. "
           f"{_n(rep['answers']['total'], 'answer')} from "
           f"{_n(rep['raters']['total'], 'rater')} "
           f"({rep['answers']['traps']} on trap pairs). CMOS is "
           f"{t['system']} minus {t['baseline']} on -3..+3.", ""]
  if rep["raters"]["flagged"]:
    lines += [f"Flagged by trap pairs (mean |score| >= "
              f"{rep['raters']['trap_threshold']}) and left out below: "
              + ", ".join(rep["raters"]["flagged"]) + ".", ""]
  lines += ["## Results", ""] + (_table(rep["results"]) if rep["results"]
                                 else ["No answers left to analyse."])
  verdict = "met" if rep["target"]["met"] else "not met"
  lines += ["", f"Target ({t['system']} preferred in at least "
            f"{rep['target']['ours_preferred_at_least']:.0%} of non-tie "
            f"judgments, p < {rep['target']['alpha']}): **{verdict}**.", ""]
  if rep["raters"]["flagged"] and rep["results_all_raters"]:
    lines += ["With every rater, flagged ones included:", ""]
    lines += _table(rep["results_all_raters"]) + [""]
  lines += [
      "## Judgments needed", "",
      f"- An observed {ss['target_preference']:.0%} preference is significant "
      f"(exact two-sided binomial, p < {ss['alpha']}) from "
      f"**{ss['n_significant']}** non-tie judgments on.",
      f"- {ss['power']:.0%} power at a true {ss['target_preference']:.0%} "
      f"preference needs **{ss['n_power']}** non-tie judgments (power stays "
      f"above {ss['power']:.0%} from {ss['n_power_stable']} on).",
      f"- So far: {ss['n_nontie_so_far']} non-tie judgments.", "",
      "## Trap pairs", "",
      f"{tr['n']} answers on identical pairs; mean {_f(tr['mean'])}, mean "
      f"|score| {_f(tr['mean_abs'], '{:.2f}')}, answered 0: "
      f"{_f(tr['zero_share'], '{:.0%}')}.", "", "## Raters", "",
      "| rater | name | judgments | mean CMOS | wins/losses/ties | Wilcoxon p |"
      " traps | trap mean abs | flagged |", "|" + " --- |" * 9]
  for r in rep["per_rater"]:
    lines.append(
        f"| {r['rater']} | {r['name'] or '-'} | {r['n']} | "
        f"{_f(r['mean_cmos'])} | {r['wins']}/{r['losses']}/{r['ties']} | "
        f"{_f(r['wilcoxon']['p_value'], '{:.3g}')} | {r['trap_n']} | "
        f"{_f(r['trap_mean_abs'], '{:.2f}')} | "
        f"{'yes' if r['flagged'] else 'no'} |")
  if plot:
    lines += ["", f"![score distribution]({plot})"]
  return "\n".join(lines) + "\n"


def plot_scores(rep: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (ax, ax_t) = plt.subplots(1, 2, figsize=(10, 3.6),
                                 gridspec_kw={"width_ratios": [2.2, 1]})
  conds = [c for c in ("no_context", "context") if c in rep["results"]]
  width = 0.8 / max(1, len(conds))
  for j, cond in enumerate(conds):
    counts = [rep["results"][cond]["counts"][str(k)] for k in SCORES]
    ax.bar(np.array(SCORES) + (j - (len(conds) - 1) / 2) * width, counts,
           width, label=cond.replace("_", " "))
  t = rep["test"]
  ax.set(xticks=SCORES, xlabel=f"score: {t['system']} minus {t['baseline']}",
         ylabel="answers", title="Rated pairs (flagged raters left out)")
  ax.axvline(0, color="#888", lw=0.8, ls=":")
  if conds:
    ax.legend(frameon=False)
  ax_t.bar(SCORES, [rep["traps"]["counts"][str(k)] for k in SCORES],
           color="#999")
  ax_t.set(xticks=SCORES, xlabel="raw score (identical audio)",
           title="Trap pairs (all raters)")
  for a in (ax, ax_t):
    a.spines[["top", "right"]].set_visible(False)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(rep: dict, out_dir: str) -> dict[str, str]:
  """Writes report.json, report.md and scores.png; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {k: os.path.join(out_dir, f) for k, f in
           (("json", "report.json"), ("md", "report.md"),
            ("png", "scores.png"))}
  with open(paths["json"], "w", encoding="utf-8") as f:
    json.dump(rep, f, indent=1)
  plot_scores(rep, paths["png"])
  with open(paths["md"], "w", encoding="utf-8") as f:
    f.write(markdown(rep, "scores.png"))
  return paths


def summary(rep: dict) -> str:
  """A few lines for the terminal."""
  t, lines = rep["test"], []
  for cond, b in rep["results"].items():
    p, c = b["preference"], b["cmos"]
    share = f"{p['ours_preferred']:.1%}" if p["n_nontie"] else "-"
    lines.append(f"{cond:>10}: {t['system']} preferred {share} of "
                 f"{p['n_nontie']} non-ties (p={_f(p['p_value'], '{:.3g}')}, "
                 f"{p['ties']} ties), CMOS {c['mean']:+.2f} "
                 f"{_ci(c['ci95_two_way'])}")
  ss = rep["sample_size"]
  lines.append(f"raters {rep['raters']['total']} "
               f"({len(rep['raters']['flagged'])} flagged); target "
               f"{'met' if rep['target']['met'] else 'not met'}; a "
               f"{ss['target_preference']:.0%} preference needs "
               f"{ss['n_significant']} non-ties to be significant, "
               f"{ss['n_power']} for {ss['power']:.0%} power")
  return "\n".join(lines)
