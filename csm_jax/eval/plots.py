"""The report's figures (PNG, matplotlib's Agg backend; no display needed)."""

from __future__ import annotations

import os

import numpy as np

from csm_jax.eval import metrics

ROW_COLORS = {"ground_truth": "#4c72b0", "codec": "#55a868",
              "codec_floor": "#937860", "model": "#c44e52",
              "compare_model": "#8172b2"}


def _plt():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def metric_bars(summary: dict, path: str) -> None:
  plt = _plt()
  names = metrics.METRICS
  fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.2))
  for ax, m in zip(axes, names):
    rows = [r for r in summary if not (m in metrics.MODEL_ONLY and
                                       not r.endswith("model"))]
    vals = [summary[r][m] for r in rows]
    x = np.arange(len(rows))
    v = np.array([e.value for e in vals])
    lo = np.array([e.value - e.low for e in vals])
    hi = np.array([e.high - e.value for e in vals])
    ax.bar(x, np.nan_to_num(v), color=[ROW_COLORS.get(r, "grey")
                                       for r in rows])
    ax.errorbar(x, np.nan_to_num(v), yerr=[np.nan_to_num(lo),
                                           np.nan_to_num(hi)],
                fmt="none", ecolor="black", capsize=3)
    for xi, vi in zip(x, v):
      if not np.isfinite(vi):
        ax.text(xi, 0, "n/a", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels([r.replace("_", "\n") for r in rows], fontsize=8)
    arrow = " (lower better)" if m in metrics.LOWER_IS_BETTER else ""
    ax.set_title(m.replace("_", " ") + arrow, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def f0_contours(result, instruments_prosody, path: str, n: int = 3) -> None:
  """Speaker's previous turn (left of the line) then each row's utterance."""
  plt = _plt()
  chosen = [i for i, p in enumerate(result.prompts)
            if p.same_speaker_context()][:n]
  fig, axes = plt.subplots(max(len(chosen), 1), 1,
                           figsize=(9, 2.4 * max(len(chosen), 1)),
                           squeeze=False)
  sr = result.sample_rate
  for ax, i in zip(axes[:, 0], chosen):
    p = result.prompts[i]
    last = p.same_speaker_context()[-1]
    prev = instruments_prosody(last.audio, sr, text=last.text)
    t_prev = np.asarray(prev["times_s"])
    offset = float(t_prev[-1]) if len(t_prev) else 0.0
    ax.plot(t_prev, prev["f0_hz"], color="black", lw=1.2,
            label="previous turn (ground truth)")
    ax.axvline(offset, color="grey", ls=":")
    for row in ("ground_truth", "model"):
      a = result.audio[row][i]
      if len(a):
        tr = instruments_prosody(a, sr, text=p.target.text)
        ax.plot(np.asarray(tr["times_s"]) + offset, tr["f0_hz"],
                color=ROW_COLORS[row], lw=1.2, label=row.replace("_", " "))
    ax.set_ylabel("F0 (Hz)")
    ax.set_title(f"{p.id} speaker {p.target.speaker}: {p.target.text[:60]}",
                 fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
  axes[-1, 0].set_xlabel("seconds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def confusions(result, path: str) -> None:
  plt = _plt()
  names = list(result.emotion_names)
  rows = [r for r in ("ground_truth", "model") if r in result.rows]
  fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4),
                           squeeze=False)
  for ax, r in zip(axes[0], rows):
    m = metrics.confusion(result.rows[r], len(names))
    ax.imshow(m, cmap="Blues")
    for a in range(len(names)):
      for b in range(len(names)):
        if m[a, b]:
          ax.text(b, a, str(m[a, b]), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=45, fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_xlabel("classified")
    ax.set_ylabel("intended")
    ax.set_title(r.replace("_", " "), fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def speaker_matrices(result, path: str) -> None:
  """cos(utterance, speaker voice): rows utterances (by speaker), columns
  speakers; the diagonal blocks should be bright for a consistent model."""
  plt = _plt()
  gt = result.rows["ground_truth"]
  speakers = sorted({p.target.speaker for p in result.prompts})
  refs = []
  for s in speakers:
    e = gt.embeddings[[p.target.speaker == s for p in result.prompts]]
    m = e.mean(axis=0)
    refs.append(m / max(np.linalg.norm(m), 1e-9))
  refs = np.stack(refs)
  order = np.argsort([p.target.speaker for p in result.prompts], kind="stable")
  rows = [r for r in ("ground_truth", "codec", "model") if r in result.rows]
  fig, axes = plt.subplots(1, len(rows), figsize=(3.6 * len(rows), 4.2),
                           squeeze=False)
  for ax, r in zip(axes[0], rows):
    sims = result.rows[r].embeddings[order] @ refs.T
    empty = np.asarray([len(result.audio[r][i]) == 0 for i in order])
    sims[empty] = np.nan
    im = ax.imshow(sims, aspect="auto", vmin=-0.2, vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(speakers)))
    ax.set_xticklabels([str(s) for s in speakers], fontsize=7)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([str(result.prompts[i].target.speaker) for i in order],
                       fontsize=6)
    ax.set_xlabel("speaker voice")
    ax.set_ylabel("utterance (its speaker)")
    ax.set_title(r.replace("_", " "), fontsize=9)
  fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def spectrograms(result, path: str, n: int = 3) -> None:
  plt = _plt()
  rows = [r for r in ("ground_truth", "codec", "model") if r in result.rows]
  n = min(n, len(result.prompts))
  fig, axes = plt.subplots(n, len(rows), figsize=(4 * len(rows), 2.4 * n),
                           squeeze=False)
  sr = result.sample_rate
  nfft, hop = 512, 128
  win = np.hanning(nfft)
  for i in range(n):
    for j, r in enumerate(rows):
      ax = axes[i, j]
      a = result.audio[r][i]
      if len(a) < nfft:
        ax.text(0.5, 0.5, "no audio", ha="center", va="center",
                transform=ax.transAxes)
      else:
        frames = np.lib.stride_tricks.sliding_window_view(a, nfft)[::hop]
        spec = np.abs(np.fft.rfft(frames * win, axis=1)).T
        db = 20 * np.log10(spec + 1e-6)
        ax.imshow(db, origin="lower", aspect="auto", vmin=db.max() - 80,
                  extent=[0, len(a) / sr, 0, sr / 2000])
      ax.set_title(f"{result.prompts[i].id} {r}", fontsize=8)
      ax.set_ylabel("kHz", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def identity_curve(extra: dict, path: str) -> None:
  plt = _plt()
  sims = np.asarray(extra["similarity_per_turn"], float)
  fig, ax = plt.subplots(figsize=(6, 3))
  ax.plot(np.arange(1, len(sims) + 1), sims, marker="o")
  ax.set_xlabel("generated turn")
  ax.set_ylabel("similarity to own voice")
  ax.set_ylim(-0.2, 1.0)
  ax.set_title("speaker identity over a generated conversation", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_all(result, out_dir: str, prosody=None) -> dict[str, str]:
  """Writes every figure; returns name -> file name (relative to out_dir)."""
  files = {"metrics": "metrics.png", "f0": "f0_contours.png",
           "emotion": "emotion_confusion.png",
           "speakers": "speaker_similarity.png",
           "spectrograms": "spectrograms.png"}
  metric_bars(result.summary, os.path.join(out_dir, files["metrics"]))
  f0_contours(result, prosody or result.prosody,
              os.path.join(out_dir, files["f0"]))
  confusions(result, os.path.join(out_dir, files["emotion"]))
  speaker_matrices(result, os.path.join(out_dir, files["speakers"]))
  spectrograms(result, os.path.join(out_dir, files["spectrograms"]))
  extra = result.extras.get("identity_over_turns")
  if extra and "similarity_per_turn" in extra:
    files["identity_over_turns"] = "identity_over_turns.png"
    identity_curve(extra, os.path.join(out_dir, files["identity_over_turns"]))
  return files


def curves_with_intervals(series: dict, x_key: str, scores, truth: dict,
                          xlabel: str, title: str, path: str,
                          references: dict | None = None) -> None:
  """One panel per score: each series' points (dicts of ``x_key`` and
  score -> {value, low, high}) with their intervals, and the ground
  truth's value as a dashed line. A series without a score is left out of
  that score's panel. ``references`` (label -> score -> {value, low,
  high}) are fixed systems, drawn as a line with their interval shaded."""
  plt = _plt()
  names = [m for m in scores
           if any(all(m in p for p in pts) for pts in series.values())]
  fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2))
  axes = np.atleast_1d(axes)
  for ax, m in zip(axes, names):
    for label, pts in series.items():
      if not all(m in p for p in pts):
        continue
      x = [p[x_key] for p in pts]
      v = np.array([p[m]["value"] for p in pts])
      lo = np.array([p[m]["low"] for p in pts])
      hi = np.array([p[m]["high"] for p in pts])
      ax.errorbar(x, v, yerr=[v - lo, hi - v], marker="o", capsize=3,
                  label=label)
    if m in truth:
      ax.axhline(truth[m]["value"], color="black", ls="--", lw=1,
                 label="ground truth")
    for k, (label, ref) in enumerate((references or {}).items()):
      if m not in ref:
        continue
      color = ("tab:red", "tab:purple", "tab:brown", "tab:gray")[k % 4]
      ax.axhline(ref[m]["value"], color=color, ls=":", lw=1.2, label=label)
      ax.axhspan(ref[m]["low"], ref[m]["high"], color=color, alpha=0.12)
    ax.set_xlabel(xlabel)
    ax.set_title(m)
  # The legend goes under the panels, where it cannot hide a point.
  handles, labels = axes[0].get_legend_handles_labels()
  ncol = min(len(labels), 3) or 1
  rows = -(-len(labels) // ncol)
  height = 3.2 + 0.22 * rows
  fig.set_size_inches(4 * len(names), height)
  fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8,
             frameon=False)
  fig.suptitle(title, fontsize=10)
  fig.tight_layout(rect=(0, (0.22 * rows + 0.1) / height, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)
