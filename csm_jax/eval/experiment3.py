"""Experiment 3 (research plan): emotional dynamics with the prosody stream.

Question: does two-stage generation (``model.prosody``) let a response
carry the emotion its place in a conversation calls for, and continue the
speaker's pitch, better than the plain CSM?

Prompts are the held-out turns of the corpus's conversations
(``prompts.build_prompts``: each with its earlier turns as context), so
their intended emotions follow the corpus's emotion arcs (a heated
argument rising, a confession calming). Every prompt is said by:

- ``ground_truth``: the recording itself (what the instruments can tell);
- ``stream_emotion``: the model with the stream, its style token set to
  the prompt's intended emotion at intensity ``INTENSITY`` (the control a
  user has: ``--emotion``);
- ``stream_free``: the same model choosing its style itself, from the
  context (the fair comparison: it gets exactly the baseline's input);
- ``baseline``: the model without the stream (``--compare``).

Scores, by the evaluation framework's instruments:

- ``emotion_accuracy``: share of utterances the emotion classifier assigns
  the intended emotion (prompts with a label);
- ``f0_continuity``: Pearson correlation across prompts of the mean log F0
  of the speaker's previous turn and of the response (``eval/metrics.py``'s
  definition);
- ``style_agreement`` (``stream_free``): share of prompts where the style
  the model chose names the intended emotion.

Intervals: percentile bootstrap over prompts (``eval/stats.py``); the
stream conditions' differences from the baseline are paired (the same
prompts resampled for both).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Sequence

import numpy as np

from csm_jax.audio.io import write_wav
from csm_jax.eval import stats
from csm_jax.eval.generation import Spoken, speak_prompts
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.prompts import build_prompts
from csm_jax.eval.suite import EvaluationError, default_sampling
from csm_jax.inference.generator import Control
from csm_jax.inference.loading import LoadError, load_generator

INTENSITY = 0.5      # the middle intensity bin: the label gives no degree
CONDITIONS = ("ground_truth", "stream_emotion", "stream_free", "baseline")
MODELS = CONDITIONS[1:]
STREAM = ("stream_emotion", "stream_free")
# Fewest prompts with a pitch track in both turns for a correlation to be
# reported (a response the tracker finds unvoiced has no mean F0).
MIN_F0_PROMPTS = 10
LISTENING = "listening"   # the responses, laid out for the listening test
ARCS = ("friendly_chat", "heated_argument", "technical_explanation",
        "emotional_confession")


def speak(gen, prompts: Sequence, sampling, controls=None,
          batch_size: int = 4) -> Spoken:
  """Each prompt said once, ``controls[i]`` its prosody control (or None),
  as ``generation.speak_prompts`` says them; the chosen style is kept."""
  return speak_prompts(gen, prompts, sampling, batch_size, controls=controls)


def mean_log_f0(instruments, audio: np.ndarray, sample_rate: int,
                text: str) -> float:
  """Mean log2 F0 over voiced frames (NaN when none or no audio)."""
  if not len(audio):
    return float("nan")
  # The text is given so that the tracker does not transcribe (only its F0
  # is read here).
  f0 = np.asarray(instruments.prosody(audio, sample_rate, text=text)["f0_hz"],
                  np.float64)
  f0 = f0[np.isfinite(f0) & (f0 > 0)]
  return float(np.mean(np.log2(f0))) if len(f0) else float("nan")


@dataclasses.dataclass
class Scores:
  """Per-prompt measurements of one condition."""

  name: str
  pred: np.ndarray         # classified emotion index, -1 for no audio
  target: np.ndarray       # intended emotion index, -1 where unlabelled
  f0_reference: np.ndarray  # mean log2 F0 of the speaker's previous turn
  f0_output: np.ndarray    # mean log2 F0 of the response

  def correct(self) -> np.ndarray:
    """1/0 per prompt, NaN where the intended emotion is unknown."""
    return np.where(self.target >= 0, (self.pred == self.target) * 1.0,
                    np.nan)


def reference_f0(instruments, prompts, sample_rate: int) -> np.ndarray:
  out = []
  for p in prompts:
    ctx = p.same_speaker_context()
    out.append(mean_log_f0(instruments, ctx[-1].audio, sample_rate,
                           ctx[-1].text) if ctx else float("nan"))
  return np.asarray(out)


def score(name: str, instruments, prompts, audios, sample_rate: int,
          f0_reference: np.ndarray) -> Scores:
  names = list(instruments.emotion_names)
  safe = [a if len(a) else np.zeros(sample_rate // 10, np.float32)
          for a in audios]
  probs = instruments.emotion_probs(safe, sample_rate)
  pred = np.where([len(a) > 0 for a in audios], np.argmax(probs, axis=1), -1)
  target = np.asarray([names.index(p.target.emotion)
                       if p.target.emotion in names else -1 for p in prompts])
  f0 = np.asarray([mean_log_f0(instruments, a, sample_rate, p.target.text)
                   for p, a in zip(prompts, audios)])
  return Scores(name, np.asarray(pred), target, np.asarray(f0_reference), f0)


def paired_correlation(ref, a, b, level: float = 0.95,
                       resamples: int = stats.DEFAULT_RESAMPLES,
                       seed: int = 0) -> stats.Estimate:
  """corr(ref, a) - corr(ref, b) over prompts all three have, with the
  prompts resampled together (a paired bootstrap of the difference)."""
  r, x, y = (np.asarray(v, np.float64) for v in (ref, a, b))
  keep = np.isfinite(r) & np.isfinite(x) & np.isfinite(y)
  r, x, y = r[keep], x[keep], y[keep]
  nan = stats.Estimate(float("nan"), float("nan"), float("nan"), len(r))
  if len(r) < 3 or min(r.std(), x.std(), y.std()) == 0:
    return nan
  idx = np.random.default_rng(seed).integers(0, len(r), (resamples, len(r)))

  def corr(u, v):
    u = u - u.mean(axis=-1, keepdims=True)
    v = v - v.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
      return (u * v).sum(-1) / np.sqrt((u ** 2).sum(-1) * (v ** 2).sum(-1))
  boot = corr(r[idx], x[idx]) - corr(r[idx], y[idx])
  boot = boot[np.isfinite(boot)]
  lo, hi = ((float(np.quantile(boot, (1 - level) / 2)),
             float(np.quantile(boot, 1 - (1 - level) / 2)))
            if len(boot) else (float("nan"), float("nan")))
  return stats.Estimate(float(corr(r, x) - corr(r, y)), lo, hi, len(r))


def _enough(e: stats.Estimate) -> stats.Estimate:
  """A correlation over fewer than ``MIN_F0_PROMPTS`` prompts is not given:
  its interval would look like a finding (n is kept, to say why)."""
  if e.n >= MIN_F0_PROMPTS:
    return e
  return stats.Estimate(float("nan"), float("nan"), float("nan"), e.n)


def summarize(scores: dict, prompts, style_hits=None, seed: int = 0) -> dict:
  """Figures with intervals: per condition, per arc, stream - baseline."""
  rows = {}
  for name, s in scores.items():
    rows[name] = {
        "emotion_accuracy": stats.mean(s.correct(), seed=seed),
        "f0_continuity": _enough(stats.correlation(
            s.f0_reference, s.f0_output, seed=seed)),
        "voiced_responses": stats.mean(np.isfinite(s.f0_output) * 1.0,
                                       seed=seed)}
  if style_hits is not None and "stream_free" in rows:
    rows["stream_free"]["style_agreement"] = stats.mean(style_hits, seed=seed)
  arcs = sorted({p.arc or "unknown" for p in prompts})
  per_arc = {}
  for arc in arcs:
    sel = np.asarray([(p.arc or "unknown") == arc for p in prompts])
    per_arc[arc] = {name: stats.mean(s.correct()[sel], seed=seed)
                    for name, s in scores.items()}
  diffs = {}
  base = scores.get("baseline")
  if base is not None:
    for name in STREAM:
      if name in scores:
        a = scores[name]
        diffs[f"{name} - baseline"] = {
            "emotion_accuracy": stats.paired(a.correct(), base.correct(),
                                             seed=seed),
            "f0_continuity": _enough(paired_correlation(
                a.f0_reference, a.f0_output, base.f0_output, seed=seed))}
  return {"rows": rows, "per_arc": per_arc, "differences": diffs}


def _load(checkpoint: str, what: str):
  try:
    return load_generator(checkpoint)
  except LoadError as e:
    raise EvaluationError(f"{what}: {e}") from e


def run_experiment3(checkpoint: str, out_dir: str, compare: str | None,
                    seed: int = 0, n_prompts: int | None = None,
                    log=None, instrument_overrides: dict | None = None
                    ) -> dict:
  """Runs the automatic part of Experiment 3; writes out_dir/report.*."""
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  if not compare:
    raise EvaluationError(
        "--suite=experiment3 compares against the model without the prosody "
        "stream: give it as --compare=RUN (e.g. the debug run)")
  gen = _load(checkpoint, "--checkpoint")
  if gen.bins is None:
    raise EvaluationError(
        f"--checkpoint={checkpoint}: this model has no prosody stream "
        "(config.model.prosody.enabled); Experiment 3 needs one trained with "
        "it, and the model without it as --compare")
  base = _load(compare, "--compare")
  if base.bins is not None:
    raise EvaluationError(f"--compare={compare}: this model has the prosody "
                          "stream too; give the model without it")
  if (base.codec.sample_rate != gen.codec.sample_rate
      or base.codec.levels != gen.codec.levels):
    raise EvaluationError(f"--compare={compare}: the two runs speak with "
                          "different codecs; paired figures need the same one")
  os.makedirs(out_dir, exist_ok=True)
  instruments = ensure_instruments(gen.config, overrides=instrument_overrides)
  sr = gen.codec.sample_rate
  prompts = build_prompts(gen.config, n_prompts, sr)
  log(f"experiment 3: {len(prompts)} held-out prompts")
  known = set(gen.bins.stats.emotion_names)
  controls = [Control(emotion=p.target.emotion, intensity=INTENSITY)
              if p.target.emotion in known else None for p in prompts]
  sampling = default_sampling(seed)
  spoken = {"ground_truth": Spoken([p.target.audio for p in prompts],
                                   [True] * len(prompts))}
  trimmed = {}
  # The free conditions are told no emotion, also by an emotion tag.
  free = [None] * len(prompts)
  for name, model, ctl in (("stream_emotion", gen, controls),
                           ("stream_free", gen, free),
                           ("baseline", base, free)):
    log(f"experiment 3: generating {name}")
    spoken[name] = speak(model, prompts, sampling, ctl)
    # Contexts longer than the trained length lose their oldest turns.
    trimmed[name] = spoken[name].trimmed
  log("experiment 3: scoring with the emotion classifier and F0 tracker")
  ref = reference_f0(instruments, prompts, sr)
  scores = {name: score(name, instruments, prompts, spoken[name].audios, sr,
                        ref) for name in CONDITIONS}
  chosen = [gen.bins.style_of(s) if s is not None else None
            for s in spoken["stream_free"].styles]
  hits = np.asarray([np.nan if not p.target.emotion else
                     float(c is not None and c[0] == p.target.emotion)
                     for p, c in zip(prompts, chosen)])
  summary = summarize(scores, prompts, hits, seed)
  result = {
      "checkpoint": checkpoint, "compare": compare, "seed": seed,
      "n_prompts": len(prompts), "intensity": INTENSITY,
      "emotion_names": list(instruments.emotion_names),
      "arcs_missing": [a for a in ARCS
                       if a not in {p.arc for p in prompts}],
      **summary,
      "end_of_speech_rate": {k: stats.mean(np.asarray(spoken[k].eos, float),
                                           seed=seed) for k in MODELS},
      "generation_s": {k: spoken[k].seconds for k in MODELS},
      "prompts_with_trimmed_context": trimmed,
      "emotion_classifier_validity": instruments.validity.get("emotion"),
      "prompts": [{
          "id": p.id, "arc": p.arc, "intended": p.target.emotion,
          **{f"classified/{k}": (instruments.emotion_names[s.pred[i]]
                                 if s.pred[i] >= 0 else None)
             for k, s in scores.items()},
          **{f"seconds/{k}": len(spoken[k].audios[i]) / sr
             for k in CONDITIONS},
          **{f"mean_f0_hz/{k}": (None if not np.isfinite(s.f0_output[i])
                                 else float(2.0 ** s.f0_output[i]))
             for k, s in scores.items()},
          "style_chosen/stream_free": (None if chosen[i] is None
                                       else list(chosen[i])),
      } for i, p in enumerate(prompts)],
  }
  write_listening(os.path.join(out_dir, LISTENING), prompts, spoken, sr)
  data = write_report(result, out_dir)
  print(table(data), flush=True)
  print(f"report: {os.path.join(out_dir, 'report.md')}", flush=True)
  return data


def write_listening(root: str, prompts, spoken: dict, sample_rate: int
                    ) -> str:
  """The responses as the listening test's input folders.

  ``root/<condition>/<prompt>.wav`` for every model condition and
  ``root/context/<prompt>.wav`` (the turn before it), each with its text
  as ``.txt`` beside it: what ``python -m csm_jax.listen pairs --ours=...
  --baseline=... --context=...`` reads (docs/listening.md).
  """
  for name in (*MODELS, "context"):
    os.makedirs(os.path.join(root, name), exist_ok=True)
  for i, p in enumerate(prompts):
    stem = p.id.replace("/", "_")
    items = [(k, spoken[k].audios[i], p.target.text) for k in MODELS]
    if p.context:
      items.append(("context", p.context[-1].audio, p.context[-1].text))
    if any(not len(audio) for _, audio, _ in items):
      # An empty response has nothing to listen to; the folders must hold
      # the same names, so the prompt is left out of all of them.
      continue
    for name, audio, text in items:
      base = os.path.join(root, name, stem)
      write_wav(base + ".wav", np.clip(audio, -1.0, 1.0), sample_rate)
      with open(base + ".txt", "w", encoding="utf-8") as f:
        f.write(text + "\n")
  return root


def _ready(x):
  if isinstance(x, dict):
    return {k: _ready(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_ready(v) for v in x]
  if isinstance(x, stats.Estimate):
    return x.to_json()
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  return x


def _est(d) -> str:
  return str(stats.Estimate(**d)) if d else "-"


def table(data: dict) -> str:
  """The headline table (markdown) of a report's JSON."""
  lines = ["| condition | emotion accuracy [95% CI] | F0 continuity r "
           "[95% CI] (prompts) | voiced responses |", "|---|---|---|---|"]
  for name, r in data["rows"].items():
    f0 = r["f0_continuity"]
    lines.append(f"| {name} | {_est(r['emotion_accuracy'])} | "
                 f"{_est(f0)} ({f0['n']}) | "
                 f"{r['voiced_responses']['value']:.2f} |")
  if data["differences"]:
    lines += ["", "| paired difference | emotion accuracy [95% CI] | "
              "F0 continuity r [95% CI] |", "|---|---|---|"]
    for name, d in data["differences"].items():
      lines.append(f"| {name} | {_est(d['emotion_accuracy'])} | "
                   f"{_est(d['f0_continuity'])} ({d['f0_continuity']['n']}) |")
  return "\n".join(lines)


def _plot(data: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(data["rows"])
  colors = {"ground_truth": "#999999", "stream_emotion": "#c44e52",
            "stream_free": "#dd8452", "baseline": "#4c72b0"}
  fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
  for ax, metric, label in ((axes[0], "emotion_accuracy",
                             "emotion accuracy (intended)"),
                            (axes[1], "f0_continuity",
                             "F0 continuity (Pearson r)")):
    est = [data["rows"][k][metric] for k in names]
    v = np.asarray([e["value"] for e in est], np.float64)
    lo = np.asarray([e["low"] for e in est], np.float64)
    hi = np.asarray([e["high"] for e in est], np.float64)
    ok = np.isfinite(v)
    err = np.nan_to_num(np.stack([v - lo, hi - v]), nan=0.0)
    ax.barh(names, np.where(ok, v, 0.0), xerr=err,
            color=[colors.get(k, "#777777") for k in names], capsize=3)
    for i in np.flatnonzero(~ok):
      ax.text(0.02, i, "n/a", va="center", fontsize=8)
    ax.axvline(0, color="black", lw=0.8)
    if metric == "f0_continuity":
      ax.set_xlim(-1, 1)
      ax.set_xticks([-1, -0.5, 0, 0.5, 1])
    else:
      ax.set_xlim(0, 1)
    ax.set_xlabel(label)
    ax.invert_yaxis()
  axes[1].set_yticklabels([])
  fig.suptitle(f"Experiment 3: {data['n_prompts']} held-out prompts, "
               "95% bootstrap intervals", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(result: dict, out_dir: str) -> dict:
  """report.json, report.md and experiment3.png; returns the JSON."""
  data = _ready(result)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(data, f, indent=2)
  _plot(data, os.path.join(out_dir, "experiment3.png"))
  arcs = list(data["per_arc"])
  md = ["# Experiment 3: emotional dynamics", "",
        f"Model with the prosody stream: `{data['checkpoint']}`; without: "
        f"`{data['compare']}`. {data['n_prompts']} held-out prompts (turns "
        "of validation conversations, each with its earlier turns as "
        "context); bootstrap 95% intervals in brackets, differences paired "
        "over prompts.", "",
        "Conditions: `ground_truth` (the recordings), `stream_emotion` (the "
        "stream model told the intended emotion, intensity "
        f"{data['intensity']}), `stream_free` (the stream model choosing its "
        "style from the context), `baseline` (the model without the "
        "stream).", "", table(data), "",
        "![experiment 3](experiment3.png)", "",
        "## Emotion accuracy per arc", "",
        "| arc | " + " | ".join(data["rows"]) + " |",
        "|---|" + "---|" * len(data["rows"])]
  for arc in arcs:
    md.append(f"| {arc} | " + " | ".join(
        _est(data["per_arc"][arc].get(k)) for k in data["rows"]) + " |")
  if data.get("arcs_missing"):
    md += ["", "Arcs without held-out prompts: "
           + ", ".join(data["arcs_missing"]) + "."]
  sa = data["rows"].get("stream_free", {}).get("style_agreement")
  if sa:
    md += ["", "Style the free stream model chose, naming the intended "
           f"emotion: {_est(sa)}."]
  validity = data.get("emotion_classifier_validity") or {}
  if validity:
    md += ["", f"Emotion classifier on held-out ground truth: accuracy "
           f"{validity.get('accuracy', float('nan')):.3f} (chance "
           f"{validity.get('chance', float('nan')):.3f}) over "
           f"{validity.get('n', '?')} turns."]
  md += ["", "Definitions: emotion accuracy is the share of responses the "
         "emotion classifier assigns the prompt's intended (labelled) "
         "emotion; F0 continuity is the Pearson correlation across prompts "
         "of the mean log F0 of the speaker's previous turn and of the "
         "response (pGSLM's prompt-to-continuation measure), over the "
         "prompts where both have a pitch track (their number in "
         f"parentheses; n/a below {MIN_F0_PROMPTS}); voiced responses is "
         "the share of responses in which the tracker finds any voiced "
         "frame.", "",
         f"The responses are in `{LISTENING}/` for the listening test "
         "(docs/listening.md)."]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  return data
