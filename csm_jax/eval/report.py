"""The evaluation report: report.json, report.md and the plots beside them.

Rows are the ground truth, the codec's resynthesis (its ceiling) and the
model, so a reader sees where quality is lost; every figure carries its
bootstrap 95% interval. Plots: metric bars with intervals, F0 contours
(the speaker's previous turn against the continuation), emotion confusion
matrices, speaker-similarity matrices, spectrograms of sample generations;
the sample wavs are written beside them.
"""

from __future__ import annotations

import json
import os

import numpy as np

from csm_jax.audio.io import write_wav
from csm_jax.eval import metrics
from csm_jax.eval import plots

DEFINITIONS = {
    "cer": "character edits / reference characters of the recognizer's "
           "transcript against the prompt text (normalized), over prompts",
    "wer": "the same over words",
    "speaker_similarity": "cosine of the utterance's speaker embedding with "
                          "the mean embedding of the same speaker's context "
                          "turns",
    "emotion_agreement": "share of utterances classified as the prompt's "
                         "labelled emotion",
    "f0_continuity": "Pearson correlation across prompts of the mean log F0 "
                     "of the speaker's previous turn and of the utterance "
                     "(pGSLM: 0.315 on LibriSpeech)",
    "end_of_speech_rate": "share of generations stopped by the "
                          "end-of-speech frame (model rows only)",
    "duration_ratio": "utterance seconds / ground-truth seconds",
    "ended_in_time": "share of generations stopped by the end-of-speech "
                     "frame with a duration ratio within 0.7-1.4 (model "
                     "rows only)",
    "pragmatic_success": "not measured: the model is given the text it says, "
                         "so it has no conversational goal of its own to "
                         "reach; any number would be invented",
}
SAMPLES = 6


def json_ready(x):
  """``x`` with arrays, numpy scalars and estimates as JSON values, and
  every ``audio`` entry left out."""
  if isinstance(x, dict):
    return {k: json_ready(v) for k, v in x.items() if k != "audio"}
  if isinstance(x, (list, tuple)):
    return [json_ready(v) for v in x]
  if isinstance(x, np.ndarray):
    return x.tolist()
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if hasattr(x, "to_json"):
    return x.to_json()
  return x


def to_json(result, checkpoint: str, validity: dict) -> dict:
  per_prompt = []
  for i, p in enumerate(result.prompts):
    per_prompt.append({
        "id": p.id, "speaker": p.target.speaker, "emotion": p.target.emotion,
        "arc": p.arc, "text": p.target.text,
        **{f"transcript/{k}": r.transcripts[i] for k, r in result.rows.items()},
        "model_seconds": float(result.rows["model"].duration_s[i]),
        "truth_seconds": float(result.rows["model"].truth_s[i]),
        "model_eos": bool(result.rows["model"].eos[i]),
    })
  return json_ready({
      "suite": result.suite, "checkpoint": checkpoint,
      "instruments": validity,
      "rows": {k: {m: e for m, e in v.items()}
               for k, v in result.summary.items()},
      "compare": result.compare, "definitions": DEFINITIONS,
      "extras": result.extras, "timings": result.timings,
      "prompts": per_prompt, "emotion_names": list(result.emotion_names),
  })


def _table(summary: dict, rows) -> list[str]:
  head = "| row | " + " | ".join(metrics.METRICS) + " |"
  lines = [head, "|" + "---|" * (len(metrics.METRICS) + 1)]
  for r in rows:
    cells = [str(summary[r][m]) if not (m in metrics.MODEL_ONLY and
                                         not r.endswith("model")) else "-"
             for m in metrics.METRICS]
    lines.append(f"| {r} | " + " | ".join(cells) + " |")
  return lines


def _validity_lines(validity: dict) -> list[str]:
  if not validity:
    return ["(no validity figures)"]
  lines = ["| instrument | on held-out ground truth |", "|---|---|"]
  r, s, e = (validity.get(k, {}) for k in ("recognizer", "speaker",
                                             "emotion"))

  def name(figures, default):
    # A plugged-in instrument (instruments/plugged.py) says what it is.
    return (f"{default}: {figures['instrument']}" if "instrument" in figures
            else default)

  def num(x):
    return "n/a" if x is None else f"{x:.3f}"
  if r:
    lines.append(f"| {name(r, 'recognizer')} | CER {num(r.get('cer'))}, WER "
                 f"{num(r.get('wer'))} over "
                 f"{r.get('n_utterances', '?')} utterances |")
  if s:
    lines.append(f"| {name(s, 'speaker encoder')} | EER "
                 f"{num(s.get('eer'))} over {s.get('n_trials', '?')} "
                 "trials |")
  if e:
    lines.append(f"| emotion classifier | accuracy "
                 f"{num(e.get('accuracy'))} (chance "
                 f"{num(e.get('chance'))}) over "
                 f"{e.get('n', '?')} turns |")
  return lines


def missed_lines(missed: dict | None) -> list[str]:
  """The generations that did not end in time, with the emotion heard in
  each (``metrics.missed_in_time``); nothing when every one did."""
  if not missed or not missed["misses"]:
    return []
  k, n = missed["in_time_when_heard_as_labelled"]
  heard = (f"; of the {n} generations it hears in the labelled emotion, "
           f"{k} ended in time" if n else "")
  emotion = (f" The emotion classifier hears another emotion than the "
             f"label in {missed['heard_in_another_emotion']} of them{heard}."
             if missed.get("labelled", 1) else "")
  out = [f"**{missed['missed']} of {missed['n']} did not end in time.**"
         + emotion,
         "", "| prompt | truth (s) | duration ratio | ended | labelled | "
         "heard |", "|---|---|---|---|---|---|"]
  out += [f"| {m['id']} | {m['truth_s']:.2f} | {m['ratio']:.2f} | "
          f"{'yes' if m['ended'] else 'no'} | {m['labelled'] or '-'} | "
          f"{m['heard'] or '-'} |" for m in missed["misses"]]
  return out + [""]


def write(result, out_dir: str, checkpoint: str, validity: dict) -> dict:
  """Writes report.json, report.md, PNGs and sample wavs into ``out_dir``."""
  os.makedirs(out_dir, exist_ok=True)
  data = to_json(result, checkpoint, validity)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(data, f, indent=2)
  rows = list(result.summary)
  figs = plots.write_all(result, out_dir)
  wav_dir = os.path.join(out_dir, "samples")
  os.makedirs(wav_dir, exist_ok=True)
  sr = result.sample_rate
  samples = []
  for i, p in enumerate(result.prompts[:SAMPLES]):
    names = []
    for r in rows:
      name = f"{i:02d}_{r}.wav"
      write_wav(os.path.join(wav_dir, name), result.audio[r][i], sr)
      names.append(f"[{r}](samples/{name})")
    samples.append(f"| {p.id} | {p.target.text[:70]} | " + " ".join(names)
                   + " |")
  md = [f"# Evaluation: {result.suite} suite", "",
        f"Checkpoint: `{checkpoint}`; {len(result.prompts)} held-out "
        "prompts; bootstrap 95% intervals in brackets."
        + (" " + metrics.EMOTION_GIVEN
           if result.extras.get("emotion_given") else ""),
        "",
        "## Instruments (validity on held-out ground truth)", "",
        *_validity_lines(validity), "", "## Results", "",
        *_table(result.summary, rows), "",
        f"![metrics]({figs['metrics']})", ""]
  if result.compare:
    md += ["## Paired differences (model - compare_model)", "",
           "| metric | difference |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in result.compare.items()]
    md.append("")
  md += ["## Plots", "",
         f"F0 contours, the speaker's previous turn then the continuation: "
         f"![f0]({figs['f0']})", "",
         f"Emotion confusion (intended rows, classified columns): "
         f"![emotion]({figs['emotion']})", "",
         f"Speaker similarity of each utterance to each speaker's voice: "
         f"![speakers]({figs['speakers']})", "",
         f"Spectrograms: ![spectrograms]({figs['spectrograms']})", ""]
  md += missed_lines(result.extras.get("missed_in_time"))
  for key, title in (("identity_over_turns", "Identity over turns"),
                     ("adversarial_identity", "Identity under adversarial "
                      "contexts"), ("long_form", "Long form")):
    if key in result.extras:
      md += [f"## {title}", "", "```",
             json.dumps(json_ready(result.extras[key]), indent=1)[:3000],
             "```", ""]
      if key in figs:
        md += [f"![{key}]({figs[key]})", ""]
  md += ["## Samples", "", "| prompt | text | audio |", "|---|---|---|",
         *samples, "", "## Definitions", ""]
  md += [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()]
  md += ["", f"Timings: {json.dumps(json_ready(result.timings))}"]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(md) + "\n")
  return data
