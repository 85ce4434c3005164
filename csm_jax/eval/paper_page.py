"""``results.md``: the results page of ``eval.paper``, from its sections' JSON.

Every figure on the page is read from what the run returned (the
sections' report JSON), with its interval; a hypothesis whose test did
not run says so and why. ``publish`` copies the page and the plots it
shows into a docs folder.
"""

from __future__ import annotations

import math
import os
import re
import shutil

from csm_jax.eval.listening.analysis import n_for_power
from csm_jax.eval.metrics import EMOTION_GIVEN
from csm_jax.eval.report import missed_lines
from csm_jax.eval.stats import Estimate

# The plan's success criteria, as figures of the sections.
PREFERENCE = 0.6            # Experiment 3's listening-test effect size
CONSISTENCY_RATIO = 2.0     # Experiment 2: memory against no memory
PROBE_TARGET = 0.70         # Experiment 1: top-1 on common words


def _e(d) -> str:
  if not isinstance(d, dict) or d.get("value") is None:
    return "n/a"
  return str(Estimate(**{k: d[k] for k in ("value", "low", "high", "n")}))


def _num(x, fmt="{:.3f}") -> str:
  if x is None or isinstance(x, float) and not math.isfinite(x):
    return "n/a"
  return fmt.format(x)


def _provenance(p: dict) -> list[str]:
  code = p["code"]
  rev = (f"commit `{code['commit']}`"
         + (" with uncommitted changes" if code.get("uncommitted_changes")
            else "") if "commit" in code else f"version {code['version']}")
  lines = [f"Checkpoint `{p['checkpoint']}` at step {p['checkpoint_step']}; "
           f"code {rev}; seed {p['seed']}; {p['date']}; "
           f"{p['machine']['cpu_cores']} CPU cores "
           f"({p['machine']['processor']}), jax {p['versions'].get('jax')}.",
           ""]
  if p.get("command"):
    lines += ["Regenerate with:", "", "```bash", p["command"], "```", ""]
  secs = p.get("seconds", {})
  lines += ["Time per section: " + ", ".join(
      f"{k} {v / 60:.1f} min" for k, v in secs.items()) + ".", "",
            "The run's full config, budget and library versions are in "
            "`results.json` (`provenance`).", ""]
  return lines


def _budget_lines(budget: dict, sections: dict) -> list[str]:
  model = sections.get("model", {})
  out = ["## What ran shorter than the plan", ""]
  if model and budget.get("prompts") is not None:
    out.append(f"- The full suite scored {model.get('held_out_prompts')} "
               "held-out prompts, not all of them.")
  lf = model.get("extras", {}).get("long_form", {}) if model else {}
  if lf and "cap_seconds" in lf and lf["cap_seconds"] < lf["target_seconds"]:
    out.append(f"- The long response was capped at {lf['cap_seconds']:.1f} s "
               f"(the plan asks {lf['target_seconds']:.0f} s): the model's "
               "trained length leaves no more after its prompt.")
  elif lf and "skipped" in lf:
    out.append(f"- No long response: {lf['skipped']}.")
  if "experiment1" in sections and "skipped" not in sections["experiment1"]:
    out.append(f"- Experiment 1's probes trained {budget['probe_steps']} "
               "steps each.")
  e2 = sections.get("experiment2", {})
  if e2 and "skipped" not in e2:
    out.append(f"- Experiment 2's configurations trained at the compute of "
               f"{budget['memory_steps']} steps of the dual memory, on "
               f"{e2['meta']['conversations']} held-out conversations.")
  e3 = sections.get("experiment3", {})
  if e3 and "skipped" not in e3:
    out.append(f"- Experiment 3's two models trained "
               f"{budget['prosody_steps']} steps each from the checkpoint, "
               f"scored on {e3['n_prompts']} prompts.")
  for name, data in sections.items():
    if isinstance(data, dict) and "skipped" in data:
      out.append(f"- **{name} did not run**: {data['skipped']}")
  return out + [""]


def _model_lines(d: dict) -> list[str]:
  out = ["## The model on held-out prompts", "",
         f"{d['held_out_prompts']} held-out prompts (each with its earlier "
         "turns as context), bootstrap 95% intervals."
         + (" " + EMOTION_GIVEN if d.get("extras", {}).get("emotion_given")
            else ""), "",
         "| row | CER | WER | speaker similarity | end of speech | "
         "ended in time |", "|---|---|---|---|---|---|"]
  for name, r in d["rows"].items():
    model = name.endswith("model")
    out.append(f"| {name} | {_e(r['cer'])} | {_e(r['wer'])} | "
               f"{_e(r['speaker_similarity'])} | "
               f"{_e(r['end_of_speech_rate']) if model else '-'} | "
               f"{_e(r.get('ended_in_time')) if model else '-'} |")
  out += ["", "![metrics](model/metrics.png)", ""]
  return out + missed_lines(d.get("extras", {}).get("missed_in_time"))


def _criteria_lines(d: dict | None, speed: dict | None) -> list[str]:
  out = ["## The plan's success criteria", ""]
  ex = (d or {}).get("extras", {})
  lf = ex.get("long_form")
  if lf and "thirds" in lf:
    out += [f"**A long response** ({lf['generated_seconds']:.1f} s generated"
            f" of a {lf['cap_seconds']:.1f} s cap; ended on end of speech: "
            f"{lf['ended_on_eos']}), scored per third:", "",
            "| third | seconds | CER against the best-matching stretch | "
            "speaker similarity |", "|---|---|---|---|"]
    out += [f"| {i + 1} | {t['seconds']:.1f} | "
            f"{_num(t['cer_vs_best_stretch'])} | "
            f"{_num(t['speaker_similarity'])} |"
            for i, t in enumerate(lf["thirds"])]
    out.append("")
  elif lf:
    out += [f"**A long response**: not scored ({lf.get('skipped')}).", ""]
  turns = ex.get("identity_over_turns")
  if turns and "mean" in turns:
    out += [f"**Identity over {turns['turns']} generated turns**: mean "
            f"similarity to the speaker's voice {_e(turns['mean'])}, slope "
            f"{_num(turns['slope_per_turn'], '{:+.4f}')} per turn.", "",
            "![identity](model/identity_over_turns.png)", ""]
  elif turns:
    out += [f"**Identity over turns**: {turns.get('skipped')}.", ""]
  adv = ex.get("adversarial_identity")
  if adv and adv.get("per_context"):
    out += ["**Identity under the adversarial contexts** (the worst is the "
            f"score: {adv['worst_context']}, {_e(adv['score'])}):", "",
            "| context | similarity |", "|---|---|"]
    out += [f"| {k} | {_e(v)} |" for k, v in adv["per_context"].items()]
    if adv.get("contexts_missing"):
      out.append(f"| missing from the prompts | "
                 f"{', '.join(adv['contexts_missing'])} |")
    out.append("")
  if speed:
    rtf = speed["real_time_factor"]
    verdict = ("real time" if rtf["value"] is not None and rtf["high"] < 1
               else "not shown real time")
    out += [f"**Speed on this CPU** ({speed['cpu_cores']} cores, "
            f"{speed['texts']} held-out texts, {speed['frames_per_call']} "
            f"frames per call): real-time factor {_e(rtf)} ({verdict}); "
            f"time to first audio {_e(speed['first_audio_ms'])} ms.", ""]
  return out


def _experiment1_lines(d: dict) -> list[str]:
  acc = d["accuracy"]
  probe = acc["probe on codec tokens"]
  out = ["## Experiment 1: do voice tokens carry meaning?", "",
         f"A probe names the next word from the last "
         f"{d['window_seconds']:.2f} s of codec tokens, no text. "
         f"{d['train_examples']} training and {d['heldout_examples']} "
         f"held-out examples over the {d['n_common']} commonest words "
         f"({100 * d['coverage']:.0f}% of word tokens; "
         f"{d.get('distinct_words', 'n/a')} distinct words in the training "
         "transcripts).", "", "| system | top-1 accuracy |", "|---|---|"]
  out += [f"| {k} | {_e(v)} |" for k, v in acc.items()]
  out += ["", "| probe on codec tokens minus | difference |", "|---|---|"]
  out += [f"| {k} | {_e(v)} |" for k, v in d["probe_minus_baseline"].items()]
  adds = d.get("trigram_plus_probe_minus_trigram")
  verdict = ("above" if probe["value"] > PROBE_TARGET else "below")
  out += ["", f"**Hypothesis** (top-1 > {PROBE_TARGET:.2f}): the probe reads "
          f"{_e(probe)}, {verdict} the target."]
  if adds:
    sign = ("adds to" if adds["low"] > 0 else "takes from" if adds["high"] < 0
            else "is not shown to add to")
    out.append(f"Voice {sign} text: trigram + probe minus trigram "
               f"{_e(adds)}.")
  return out + ["", "![accuracy](experiment1/accuracy.png)", ""]


def _experiment2_lines(d: dict) -> list[str]:
  out = ["## Experiment 2: does prosodic memory keep a character?", ""]
  if "skipped" in d:
    return out + [f"Not run: {d['skipped']}", ""]
  s = d["summary"]
  n = d['meta']['conversations']
  out += [f"{n} held-out conversation{'s' if n != 1 else ''}, "
          f"{d['meta']['turns']} generated turns; similarity of each turn to "
          "its speaker's voice, and the ratio to no memory on the same "
          "turns (paired).", "",
          "| configuration | consistency | ratio to no memory |",
          "|---|---|---|"]
  best = None
  for name, r in s.items():
    ratio = r.get("ratio_to_no_memory")
    out.append(f"| {name} | {_e(r.get('consistency'))} | {_e(ratio)} |")
    if ratio and ratio.get("value") is not None and name != "no_memory" and (
        best is None or ratio["low"] > best[1]["low"]):
      best = (name, ratio)
  if best:
    met = best[1]["low"] >= CONSISTENCY_RATIO
    out += ["", f"**Hypothesis** (memory doubles consistency): the best "
            f"configuration, {best[0]}, has ratio {_e(best[1])}: "
            f"{'met' if met else 'not met'}."]
  return out + ["", "![consistency](experiment2/consistency_vs_turn.png)", ""]


def _experiment3_lines(d: dict) -> list[str]:
  out = ["## Experiment 3: emotional dynamics with the prosody stream", ""]
  need = n_for_power(PREFERENCE)
  if "skipped" in d:
    return out + [f"Not run: {d['skipped']}", "",
                  f"A {PREFERENCE:.0%} listening preference needs {need[1]} "
                  "non-tie judgments for 80% power at alpha 0.05.", ""]
  out += [f"{d['n_prompts']} held-out prompts along the corpus's emotion "
          "arcs; the model with the prosody stream, told the emotion "
          "(stream_emotion) and free (stream_free), against the same "
          f"training without it (baseline), {d.get('variant_steps')} steps "
          "each from the checkpoint.", "",
          "| condition | emotion accuracy | F0 continuity r |",
          "|---|---|---|"]
  for name, r in d["rows"].items():
    out.append(f"| {name} | {_e(r['emotion_accuracy'])} | "
               f"{_e(r['f0_continuity'])} |")
  if d.get("differences"):
    out += ["", "| paired difference | emotion accuracy | "
            "F0 continuity r |", "|---|---|---|"]
    for name, r in d["differences"].items():
      out.append(f"| {name} | {_e(r['emotion_accuracy'])} | "
                 f"{_e(r['f0_continuity'])} |")
    free = d["differences"].get("stream_free - baseline",
                                {}).get("emotion_accuracy")
    if free:
      verdict = ("better" if free["low"] > 0 else "worse" if free["high"] < 0
                 else "not shown better")
      out += ["", f"**Hypothesis** (the stream carries the emotion the "
              f"context calls for): given the same input, the stream is "
              f"{verdict} than the baseline ({_e(free)})."]
  pairs = d.get("listening_pairs")
  out += ["", f"**Listening test**: pairs built in `{pairs}` "
          f"({d.get('listening_items', 0)} items), served with "
          f"`python -m csm_jax.listen serve --pairs={pairs}`. A "
          f"{PREFERENCE:.0%} preference needs {need[1]} non-tie judgments "
          "for 80% power at alpha 0.05 (exact binomial test).", "",
          "![experiment 3](experiment3/experiment3.png)", ""]
  return out


def write_page(results: dict, out_dir: str) -> str:
  """Writes out_dir/results.md from ``run_paper``'s results."""
  p = results["provenance"]
  s = results["sections"]
  md = ["# Results", ""] + _provenance(p)
  md += _budget_lines(p["budget"], s)
  if "model" in s:
    md += _model_lines(s["model"])
  if "model" in s or "speed" in s:
    md += _criteria_lines(s.get("model"), s.get("speed"))
  if "experiment1" in s:
    md += _experiment1_lines(s["experiment1"])
  if "experiment2" in s:
    md += _experiment2_lines(s["experiment2"])
  if "experiment3" in s:
    md += _experiment3_lines(s["experiment3"])
  path = os.path.join(out_dir, "results.md")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(md) + "\n")
  return path


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)]+\.png)\)")


def publish(out_dir: str, page: str, images: str) -> list[str]:
  """Copies out_dir/results.md to ``page`` and the PNGs it shows into
  ``images``, links rewritten; returns the copied images."""
  with open(os.path.join(out_dir, "results.md"), encoding="utf-8") as f:
    text = f.read()
  os.makedirs(images, exist_ok=True)
  copied = []

  def move(m):
    src = os.path.join(out_dir, m.group(2))
    if not os.path.exists(src):
      return m.group(0)
    name = m.group(2).replace("/", "_")
    shutil.copyfile(src, os.path.join(images, name))
    copied.append(name)
    rel = os.path.relpath(os.path.join(images, name),
                          os.path.dirname(os.path.abspath(page)))
    return f"![{m.group(1)}]({rel})"

  text = _IMAGE.sub(move, text)
  with open(page, "w", encoding="utf-8") as f:
    f.write(text)
  return copied

