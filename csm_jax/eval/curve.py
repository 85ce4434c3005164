"""A learning curve: the quick suite's headline at every kept checkpoint.

``python -m csm_jax.evaluate --checkpoint=RUN --suite=curve`` loads each
committed checkpoint of a training workdir, has it say the same held-out
prompts, and plots CER (and speaker similarity, end-of-speech rate) against
the step, with the ground-truth and codec rows as horizontal references.
The ground truth and the codec row are scored once.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from csm_jax.eval import metrics
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.generation import resynthesize, speak_prompts
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.prompts import build_prompts
from csm_jax.inference.loading import load_generator
from csm_jax.store import layout
from csm_jax.store.checkpoint import make_manager

HEADLINE = ("cer", "speaker_similarity", "end_of_speech_rate")


def checkpoint_steps(workdir: str) -> list[int]:
  manager = make_manager(layout.absolute(workdir), keep=1000,
                         async_save=False)
  try:
    return sorted(manager.all_steps())
  finally:
    manager.close()


def learning_curve(workdir: str, out_dir: str, n_prompts: int = 12,
                   seed: int = 0, log=None) -> dict:
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  steps = checkpoint_steps(workdir)
  if not steps:
    raise suite_lib.EvaluationError(f"--checkpoint: {workdir} holds no "
                                    "committed checkpoint for a curve")
  gen = load_generator(workdir, step=steps[-1])
  sr = gen.codec.sample_rate
  instruments = ensure_instruments(gen.config)
  prompts = build_prompts(gen.config, n_prompts, sr)
  truth = [p.target.audio for p in prompts]
  refs = {
      "ground_truth": metrics.summarize(metrics.score_row(
          "ground_truth", instruments, prompts, truth, sr), seed),
      "codec": metrics.summarize(metrics.score_row(
          "codec", instruments, prompts, resynthesize(gen.codec, truth), sr),
          seed)}
  points = []
  for k, step in enumerate(steps):
    g = gen if step == steps[-1] else load_generator(workdir, step=step)
    spoken = speak_prompts(g, prompts, suite_lib.default_sampling(seed))
    row = metrics.score_row("model", instruments, prompts, spoken.audios, sr,
                            eos=spoken.eos)
    s = metrics.summarize(row, seed)
    points.append({"step": step, **{m: s[m].to_json() for m in HEADLINE}})
    log(f"curve {k + 1}/{len(steps)}: step {step}: CER {s['cer']}")
  result = {"checkpoint": workdir, "prompts": len(prompts), "points": points,
            "references": {r: {m: v[m].to_json() for m in HEADLINE}
                           for r, v in refs.items()},
            "instruments": instruments.validity}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "curve.json"), "w") as f:
    json.dump(result, f, indent=2)
  _plot(result, os.path.join(out_dir, "curve.png"))
  return result


def _plot(result: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, len(HEADLINE), figsize=(4.2 * len(HEADLINE), 3.3))
  x = [p["step"] for p in result["points"]]
  for ax, m in zip(axes, HEADLINE):
    v = np.array([p[m]["value"] for p in result["points"]])
    lo = np.array([p[m]["low"] for p in result["points"]])
    hi = np.array([p[m]["high"] for p in result["points"]])
    ax.plot(x, v, marker="o", color="#c44e52", label="model")
    ax.fill_between(x, lo, hi, color="#c44e52", alpha=0.2)
    for r, color in (("ground_truth", "#4c72b0"), ("codec", "#55a868")):
      ref = result["references"][r][m]["value"]
      if np.isfinite(ref) and m != "end_of_speech_rate":
        ax.axhline(ref, color=color, ls="--", lw=1, label=r.replace("_", " "))
    ax.set_xlabel("training step")
    ax.set_title(m.replace("_", " "), fontsize=9)
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
