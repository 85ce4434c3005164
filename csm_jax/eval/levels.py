"""Quality and speed against the number of codebooks generated.

``python -m csm_jax.evaluate --checkpoint=RUN --suite=levels`` has the model
say the quick suite's held-out prompts with only the first k codebooks
generated (``Sampling.n_levels``; the codec decodes those k levels), for
every k of ``--levels`` (default 1, 2, 4, ... and all of them). Each k gets
three figures:

- the model's CER, WER, speaker similarity and end-of-speech rate, with
  bootstrap 95% intervals;
- the codec's resynthesis of the ground truth from its first k levels, the
  best any model generating k levels can do;
- speed at batch 1 on the machine it runs on: time to first audio and
  steady-state ms per frame (codec decoding included), the median of
  ``REPEATS`` generations of a fixed length after a compiling one, with the
  spread (max - min) / median.

Writes levels.json, levels.md and two PNGs (quality, speed against k).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import numpy as np

from csm_jax.eval import metrics
from csm_jax.eval import plots
from csm_jax.eval import stats
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.generation import resynthesize, speak_prompts
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.prompts import build_prompts

QUALITY = ("cer", "wer", "speaker_similarity", "end_of_speech_rate")
REPEATS = 5
TIMED_SECONDS = 2.0


def default_levels(n: int) -> list[int]:
  """1, 2, 4, ... below ``n``, then ``n``."""
  out, k = [], 1
  while k < n:
    out.append(k)
    k *= 2
  return out + [n]


def check_levels(levels, n: int) -> list[int]:
  ks = sorted(set(int(k) for k in levels))
  bad = [k for k in ks if not 1 <= k <= n]
  if bad or not ks:
    raise suite_lib.EvaluationError(
        f"--levels: {bad[0] if bad else 'none given'}: the model predicts "
        f"{n} codebooks (need 1 <= k <= {n})")
  return ks


def speed(gen, prompt, sampling, repeats: int = REPEATS) -> dict:
  """Time to first audio and steady ms/frame for one level count."""
  s = dataclasses.replace(sampling, max_seconds=TIMED_SECONDS,
                          min_seconds=TIMED_SECONDS)
  args = (prompt.target.text, prompt.target.speaker)
  gen.generate(*args, (), s)                      # compiles this k
  first, steady = [], []
  for r in range(repeats):
    out = gen.generate(*args, (), dataclasses.replace(s, seed=s.seed + r))
    frames = len(out["codes"])
    first_frames = min(s.frames_per_call, frames)
    first.append(1e3 * out["first_chunk_s"])
    if frames > first_frames:
      steady.append(1e3 * (out["compute_s"] - out["first_chunk_s"])
                    / (frames - first_frames))

  def med(xs):
    if not xs:
      return {"value": float("nan"), "low": float("nan"),
              "high": float("nan"), "spread": float("nan")}
    m = float(np.median(xs))
    return {"value": m, "low": float(min(xs)), "high": float(max(xs)),
            "spread": float((max(xs) - min(xs)) / m) if m else 0.0}
  return {"first_audio_ms": med(first), "ms_per_frame": med(steady)}


def levels_curve(run: str, out_dir: str, levels=None, n_prompts: int = 12,
                 seed: int = 0, log=None, instrument_overrides=None,
                 repeats: int = REPEATS) -> dict:
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  gen = suite_lib.load(run)
  ks = check_levels(levels or default_levels(gen.n), gen.n)
  sr = gen.codec.sample_rate
  instruments = ensure_instruments(gen.config,
                                   overrides=instrument_overrides)
  prompts = build_prompts(gen.config, n_prompts, sr)
  truth = [p.target.audio for p in prompts]
  gt = metrics.summarize(metrics.score_row(
      "ground_truth", instruments, prompts, truth, sr), seed)
  sampling = suite_lib.default_sampling(seed)
  progress = suite_lib.Progress({f"{k} levels": 1.0 for k in ks})
  points = []
  for k in ks:
    n_levels = None if k == gen.n else k
    codec = metrics.summarize(metrics.score_row(
        "codec", instruments, prompts,
        resynthesize(gen.codec, truth, n_levels=n_levels), sr), seed)
    spoken = speak_prompts(gen, prompts,
                           dataclasses.replace(sampling, n_levels=n_levels))
    model = metrics.summarize(metrics.score_row(
        "model", instruments, prompts, spoken.audios, sr, eos=spoken.eos),
        seed)
    points.append({
        "levels": k,
        "model": {m: model[m].to_json() for m in QUALITY},
        # The codec resynthesizes whole clips: no end of speech to judge.
        "codec": {m: codec[m].to_json() for m in QUALITY
                  if m != "end_of_speech_rate"},
        **speed(gen, prompts[0],
                dataclasses.replace(sampling, n_levels=n_levels), repeats)})
    progress(f"{k} levels")
    log(f"levels {k}/{gen.n}: model CER {model['cer']}, codec CER "
        f"{codec['cer']}, {points[-1]['ms_per_frame']['value']:.1f} ms/frame")
  result = {"checkpoint": run, "prompts": len(prompts), "codebooks": gen.n,
            "ground_truth": {m: gt[m].to_json() for m in QUALITY
                             if m != "end_of_speech_rate"},
            "points": points, "repeats": repeats,
            "instruments": instruments.validity}
  write(result, out_dir)
  return result


def write(result: dict, out_dir: str) -> None:
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "levels.json"), "w") as f:
    json.dump(result, f, indent=2)
  pts = result["points"]
  title = (f"{result['prompts']} held-out prompts, 95% bootstrap intervals")
  plots.curves_with_intervals(
      {"model": [{"levels": p["levels"], **p["model"]} for p in pts],
       "codec resynthesis": [{"levels": p["levels"], **p["codec"]}
                             for p in pts]},
      "levels", QUALITY, result["ground_truth"], "codebooks generated",
      "quality against levels: " + title,
      os.path.join(out_dir, "levels_quality.png"))
  plots.curves_with_intervals(
      {"model, batch 1": [{"levels": p["levels"],
                           "first_audio_ms": p["first_audio_ms"],
                           "ms_per_frame": p["ms_per_frame"]} for p in pts]},
      "levels", ("first_audio_ms", "ms_per_frame"), {}, "codebooks generated",
      f"speed against levels (median and range of {result['repeats']} "
      "runs)",
      os.path.join(out_dir, "levels_speed.png"))
  with open(os.path.join(out_dir, "levels.md"), "w") as f:
    f.write(markdown(result))


def markdown(result: dict) -> str:
  def fmt(e):
    return str(stats.Estimate(**e))
  lines = [f"# Quality and speed against levels: {result['checkpoint']}", "",
           f"{result['prompts']} held-out prompts; 95% bootstrap intervals. "
           "The codec column is its resynthesis of the ground truth from "
           "the same number of levels. Speed: batch 1, median of "
           f"{result['repeats']} runs (range in brackets), codec decoding "
           "included.",
           "", f"Ground truth CER {fmt(result['ground_truth']['cer'])}.", "",
           "| levels | model CER | codec CER | model speaker similarity | "
           "end of speech | first audio ms | ms/frame |",
           "|---|---|---|---|---|---|---|"]
  for p in result["points"]:
    sp = p["ms_per_frame"]
    fa = p["first_audio_ms"]
    lines.append(
        f"| {p['levels']} | {fmt(p['model']['cer'])} | "
        f"{fmt(p['codec']['cer'])} | "
        f"{fmt(p['model']['speaker_similarity'])} | "
        f"{fmt(p['model']['end_of_speech_rate'])} | "
        f"{fa['value']:.0f} [{fa['low']:.0f}, {fa['high']:.0f}] | "
        f"{sp['value']:.1f} [{sp['low']:.1f}, {sp['high']:.1f}] |")
  lines += ["", "![quality](levels_quality.png)", "",
            "![speed](levels_speed.png)", ""]
  return "\n".join(lines)
