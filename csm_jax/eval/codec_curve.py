"""The codec's intelligibility ceiling against its training steps, beside its floor.

No CSM predicting a codec's codes can be more intelligible than the codec's
own resynthesis of ground truth. ``python -m csm_jax.evaluate
--checkpoint=RUN --suite=codec_curve`` restores every committed checkpoint
of the codec training workdir the CSM run was trained with (or
``--codec_run``, or RUN itself when it is a codec run), resynthesizes the
held-out prompts' ground truth with it, and scores CER, WER and speaker
similarity with the corpus's instruments, so a reader sees whether the
ceiling is still falling with more codec training or has flattened.

Beside it: ``--compare_codecs`` (other codec training workdirs, each its
own curve, e.g. a codec of the other family) and the floor at the same bit
rate, the k-means mel RVQ with Griffin-Lim fitted on the training split
(``eval.mel_rvq``), which a codec that learned anything must beat; the
run's last checkpoint minus the floor, paired on the same prompts, is
``codec_minus_floor`` (its interval excluding zero is what beating means),
and each compared run's last checkpoint minus the run's is
``compared_minus_run``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Sequence

import numpy as np

from csm_jax.codec.handle import CodecHandle
from csm_jax.eval import mel_rvq
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
  """The codec trainer workdir of a CSM run, ``codec_run`` itself, or
  ``run`` when it is a codec run."""
  if (not codec_run and layout.is_workdir(run)
      and load_run_config(run).get("task") == "codec"):
    return run
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


def _curve(workdir: str, instruments, prompts, truth, seed: int, log,
           label: str) -> tuple[list, CodecHandle, metrics.RowScores]:
  """Points per checkpoint, the last checkpoint's codec and its scores."""
  steps = checkpoint_steps(workdir)
  if not steps:
    raise suite_lib.EvaluationError(f"{workdir} holds no committed "
                                    "checkpoint")
  points, codec, row = [], None, None
  for k, step in enumerate(steps):
    codec = _codec_at(workdir, step)
    row = metrics.score_row("codec", instruments, prompts,
                            resynthesize(codec, truth), codec.sample_rate)
    scores = metrics.summarize(row, seed)
    points.append({"step": step, **{m: scores[m].to_json() for m in SCORES
                                    if m in scores},
                   "usage": code_usage(codec, truth)})
    log(f"codec curve: {label} step {step}: CER {scores['cer']}, codebook "
        "usage per level "
        + " ".join(f"{u:.2f}" for u in points[-1]["usage"])
        + f" ({k + 1}/{len(steps)} checkpoints)")
  return points, codec, row


def code_usage(codec, audios) -> list[float]:
  """Per level, the share of its codebook the held-out audio uses."""
  codes = np.concatenate([codec.encode(a) for a in audios])
  return [len(np.unique(codes[:, i])) / codec.codebook_size
          for i in range(codes.shape[1])]


def _label(workdir: str, codec: CodecHandle) -> str:
  family = load_run_config(workdir).get("codec", {}).get("family", "seanet")
  return (f"{family} codec ({os.path.basename(os.path.normpath(workdir))}, "
          f"{codec.levels} x {codec.codebook_size})")


def codec_curve(run: str, out_dir: str, codec_run: str | None = None,
                n_prompts: int = 12, seed: int = 0, log=None,
                compare: Sequence[str] = (), floor: bool = True,
                instrument_overrides: dict | None = None) -> dict:
  """Scores every checkpoint (module docstring); ``instrument_overrides``
  as ``ensure_instruments`` takes them."""
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  workdir = codec_workdir(run, codec_run)
  others = [codec_workdir(w, w) for w in compare]
  config = load_run_config(run)
  instruments = ensure_instruments(config, overrides=instrument_overrides)
  # The rate from the codec run's config: its checkpoints are restored
  # once each, by _curve.
  rate = int(load_run_config(workdir)["codec"]["sample_rate"])
  prompts = build_prompts(config, n_prompts, rate)
  truth = [p.target.audio for p in prompts]
  rows = {"ground_truth": metrics.summarize(metrics.score_row(
      "ground_truth", instruments, prompts, truth, rate), seed)}
  series, first, last_row, run_label, versus = {}, None, None, None, {}
  for w in [workdir, *others]:
    points, codec, row = _curve(w, instruments, prompts, truth, seed, log, w)
    if codec.sample_rate != rate:
      raise suite_lib.EvaluationError(
          f"--compare_codecs: {w} runs at {codec.sample_rate} Hz, {workdir} "
          f"at {rate} Hz; compare codecs of one rate")
    label = _label(w, codec)
    series[label] = points
    if first is None:
      first, last_row, run_label = codec, row, label
      continue
    # An ablation's claim, like the floor's, is about the same prompts.
    diff = metrics.compare(row, last_row, seed)
    versus[label] = {m: diff[m].to_json() for m in SCORES if m in diff}
    log(f"codec curve: {label} - {run_label}, last checkpoints "
        f"paired: CER {diff['cer']}, speaker similarity "
        f"{diff['speaker_similarity']}")
  references, paired = {}, {}
  if floor:
    base = mel_rvq.corpus_floor(config, first, log)
    floor_row = metrics.score_row("floor", instruments, prompts,
                                  resynthesize(base, truth), rate)
    scores = metrics.summarize(floor_row, seed)
    # Beating the floor is a claim about the same prompts: the paired
    # difference has the interval that says it, where two overlapping
    # intervals of the rows say nothing.
    diff = metrics.compare(last_row, floor_row, seed)
    paired = {"step": series[run_label][-1]["step"],
              **{m: diff[m].to_json() for m in SCORES if m in diff}}
    log(f"codec curve: last checkpoint - floor, paired: CER {diff['cer']}, "
        f"speaker similarity {diff['speaker_similarity']}")
    name = (f"k-means mel RVQ + Griffin-Lim ({first.levels} x "
            f"{first.codebook_size})")
    references[name] = {m: scores[m].to_json() for m in SCORES
                        if m in scores}
    log(f"codec curve: floor {name}: CER {scores['cer']}")
  result = {"run": run, "codec_run": workdir, "compare": others,
            "prompts": len(prompts),
            "ground_truth": {m: rows["ground_truth"][m].to_json()
                             for m in SCORES if m in rows["ground_truth"]},
            "series": series, "references": references,
            "codec_minus_floor": paired,
            "compared_minus_run": versus,
            "points": series[run_label]}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "codec_curve.json"), "w") as f:
    json.dump(result, f, indent=2)
  _plot(result, os.path.join(out_dir, "codec_curve.png"))
  return result


def _plot(result: dict, path: str) -> None:
  plots.curves_with_intervals(
      result["series"], "step", SCORES, result["ground_truth"],
      "codec training step",
      f"codec resynthesis of {result['prompts']} held-out prompts (95% "
      "bootstrap intervals)", path, references=result["references"])
