"""The codec's intelligibility ceiling against its training steps.

No CSM predicting a codec's codes can be more intelligible than the codec's
own resynthesis of ground truth. ``python -m csm_jax.evaluate
--checkpoint=RUN --suite=codec_curve`` restores every committed checkpoint
of the codec training workdir the CSM run was trained with (or
``--codec_run``), resynthesizes the held-out prompts' ground truth with it,
and scores CER, WER and speaker similarity with the corpus's instruments,
so a reader sees whether the ceiling is still falling with more codec
training or has flattened.
"""

from __future__ import annotations

import json
import os
import sys

from csm_jax.codec.handle import CodecHandle
from csm_jax.eval import metrics
from csm_jax.eval import plots
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.curve import checkpoint_steps
from csm_jax.eval.generation import resynthesize
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.prompts import build_prompts
from csm_jax.store import layout
from csm_jax.store.restore import RestoreError, restore_params
from csm_jax.store.run_config import load_run_config

SCORES = ("cer", "wer", "speaker_similarity")


def codec_workdir(run: str, codec_run: str | None) -> str:
  """The codec trainer workdir of a CSM run, or ``codec_run`` itself."""
  path = codec_run or os.path.join(run, "codec")
  if not layout.is_workdir(path):
    raise suite_lib.EvaluationError(
        f"--codec_run: {path} is not a codec training workdir (no "
        f"{layout.RUN_CONFIG}); pass the workdir the codec was trained in")
  if load_run_config(path).get("task") != "codec":
    raise suite_lib.EvaluationError(f"--codec_run: {path} is not a codec run")
  return path


def _codec_at(workdir: str, step: int) -> CodecHandle:
  try:
    return CodecHandle(restore_params(workdir, step=step).model().codec)
  except RestoreError as e:
    raise suite_lib.EvaluationError(f"{workdir} step {step}: {e}") from e


def codec_curve(run: str, out_dir: str, codec_run: str | None = None,
                n_prompts: int = 12, seed: int = 0, log=None) -> dict:
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  workdir = codec_workdir(run, codec_run)
  steps = checkpoint_steps(workdir)
  if not steps:
    raise suite_lib.EvaluationError(f"--codec_run: {workdir} holds no "
                                    "committed checkpoint")
  config = load_run_config(run)
  first = _codec_at(workdir, steps[0])
  instruments = ensure_instruments(config)
  prompts = build_prompts(config, n_prompts, first.sample_rate)
  truth = [p.target.audio for p in prompts]
  rows = {"ground_truth": metrics.summarize(metrics.score_row(
      "ground_truth", instruments, prompts, truth, first.sample_rate), seed)}
  points = []
  for k, step in enumerate(steps):
    codec = first if k == 0 else _codec_at(workdir, step)
    scores = metrics.summarize(metrics.score_row(
        "codec", instruments, prompts, resynthesize(codec, truth),
        codec.sample_rate), seed)
    points.append({"step": step, **{m: scores[m].to_json() for m in SCORES
                                    if m in scores}})
    log(f"codec curve: step {step}: CER {scores['cer']} "
        f"({k + 1}/{len(steps)} checkpoints)")
  result = {"run": run, "codec_run": workdir, "prompts": len(prompts),
            "ground_truth": {m: rows["ground_truth"][m].to_json()
                             for m in SCORES if m in rows["ground_truth"]},
            "points": points}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "codec_curve.json"), "w") as f:
    json.dump(result, f, indent=2)
  _plot(result, os.path.join(out_dir, "codec_curve.png"))
  return result


def _plot(result: dict, path: str) -> None:
  plots.curves_with_intervals(
      {"codec resynthesis": result["points"]}, "step", SCORES,
      result["ground_truth"], "codec training step",
      f"codec ceiling on {result['prompts']} held-out prompts (95% "
      "bootstrap intervals)", path)
