"""The results page: the research plan's experiments and success criteria.

``python -m csm_jax.evaluate --suite=paper --checkpoint=RUN --out=DIR`` runs,
on one trained CSM and its corpus:

- ``model``: the full suite (every held-out prompt, or ``Budget.prompts``):
  ground truth, codec, floor, teacher-forced ceiling and model rows; the
  identity over ``conversation_turns`` generated turns; the adversarial
  contexts; a long response scored per third;
- ``speed``: real-time factor and time to first audio on this machine;
- ``experiment1``: the next-word probe (``eval.experiment1``);
- ``experiment2``: the seven memory configurations (``eval.experiment2``),
  each trained ``memory_steps`` from RUN at equal compute;
- ``experiment3``: the prosody stream (``eval.experiment3``): RUN trained
  ``prosody_steps`` more with the stream and, for the same compute, without
  it, then both scored along the corpus's emotion arcs; the listening-test
  pairs are written beside it.

A section the checkpoint's model cannot run (a switch its text stream does
not take) is kept on the page with the reason, and so is every way a
section ran shorter than the plan asks. ``paper_page`` writes
``DIR/results.md``; ``provenance`` records the commit, configs, seeds and
budget that reproduce it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time

from csm_jax.config import schema
from csm_jax.eval import report as report_lib
from csm_jax.eval import stats
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.experiment1 import PROBE_STEPS
from csm_jax.eval.instruments import plugged
from csm_jax.eval.paper_page import write_page
from csm_jax.eval.provenance import provenance
from csm_jax.inference.generator import Sampling

SECTIONS = ("model", "speed", "experiment1", "experiment2", "experiment3")


@dataclasses.dataclass(frozen=True)
class Budget:
  """How much of each section runs (defaults: about an hour on 2 cores)."""
  prompts: int | None = None        # full suite; None: every held-out prompt
  conversation_turns: int = 10      # generated turns for identity over turns
  probe_steps: int = PROBE_STEPS    # experiment 1: each probe's steps
  memory_steps: int = 200           # experiment 2: steps of the dual
                                    # memory (0: the section is left out)
  conversations: int | None = 4     # experiment 2: held-out conversations
  prosody_steps: int = 300          # experiment 3: steps of each variant
                                    # (0: the section is left out)
  experiment3_prompts: int | None = 24
  speed_texts: int = 4              # held-out texts timed for speed

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _skipped(reason: str) -> dict:
  return {"skipped": reason}


def _model_section(gen, instruments, out_dir, checkpoint, seed, budget,
                   log) -> dict:
  log("paper: the full suite (rows, identity over turns, adversarial "
      "contexts, long form)")
  result = suite_lib.run(gen, instruments, "full", seed=seed,
                         n_prompts=budget.prompts,
                         conversation_turns=budget.conversation_turns)
  data = report_lib.write(result, out_dir, checkpoint, instruments.validity)
  data["held_out_prompts"] = len(result.prompts)
  return data


def measure_speed(gen, texts, seed: int = 0, frames_per_call: int = 4
                  ) -> dict:
  """Real-time factor (wall / audio seconds) and time to first audio of
  ``texts`` spoken one by one, after an untimed run of each compiles its
  shapes (a prompt length's first call compiles)."""
  s = Sampling(frames_per_call=frames_per_call, max_seconds=10.0, seed=seed)
  for i, text in enumerate(texts):
    list(gen.stream(text, 0, (), dataclasses.replace(s, seed=seed + i)))
  rtf, first = [], []
  for i, text in enumerate(texts):
    s = dataclasses.replace(s, seed=seed + i)
    t0 = time.perf_counter()
    chunks = list(gen.stream(text, 0, (), s))
    wall = time.perf_counter() - t0
    seconds = sum(len(c.codes) for c in chunks) * gen.frame_seconds
    if chunks and seconds > 0:
      rtf.append(wall / seconds)
      first.append(1000.0 * chunks[0].elapsed_s)
  return {"texts": len(texts), "frames_per_call": frames_per_call,
          "cpu_cores": os.cpu_count(),
          "real_time_factor": stats.mean(rtf, seed=seed).to_json(),
          "first_audio_ms": stats.mean(first, seed=seed).to_json()}


def _experiment2(checkpoint, out_dir, seed, budget, overrides, log) -> dict:
  from csm_jax.eval.experiment2 import run_experiment2  # pylint: disable=g-import-not-at-top
  if budget.memory_steps <= 0:
    return _skipped("left out of this run's budget (--train_steps=0)")
  log("paper: experiment 2 (memory configurations)")
  try:
    return run_experiment2(checkpoint, out_dir, steps=budget.memory_steps,
                           seed=seed, max_conversations=budget.conversations,
                           instrument_overrides=overrides, out=sys.stderr)
  except schema.ConfigError as e:
    return _skipped(f"the dual memory cannot be trained on this model: {e}")


def _experiment3(checkpoint, out_dir, seed, budget, overrides, log) -> dict:
  from csm_jax.eval import variants  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.experiment3 import LISTENING, run_experiment3  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.listening.pairs import build_pairs  # pylint: disable=g-import-not-at-top
  if budget.prosody_steps <= 0:
    return _skipped("left out of this run's budget (--prosody_steps=0)")
  log("paper: experiment 3 (prosody stream)")
  try:
    runs = variants.train_prosody_pair(
        checkpoint, os.path.join(out_dir, "runs"), budget.prosody_steps, log)
  except schema.ConfigError as e:
    return _skipped(f"the prosody stream cannot be trained on this model: "
                    f"{e}")
  data = run_experiment3(runs["prosody"], out_dir, runs["plain"], seed=seed,
                         n_prompts=budget.experiment3_prompts, log=log,
                         instrument_overrides=overrides)
  data["variant_steps"] = budget.prosody_steps
  # The listening test's pairs: the stream told the emotion against the
  # baseline, each after the turn it answers.
  heard = os.path.join(out_dir, LISTENING)
  pairs_dir = os.path.join(out_dir, "pairs")
  if os.path.exists(os.path.join(pairs_dir, "pairs.json")):
    shutil.rmtree(pairs_dir)
  built = build_pairs(os.path.join(heard, "stream_emotion"),
                      os.path.join(heard, "baseline"), pairs_dir,
                      context=os.path.join(heard, "context"),
                      name="experiment3", system="prosody stream",
                      baseline_name="no prosody stream")
  data["listening_pairs"] = pairs_dir
  data["listening_items"] = len(built.items)
  return data


def run_paper(checkpoint: str, out_dir: str, seed: int = 0,
              budget: Budget = Budget(), sections=SECTIONS,
              instrument_overrides: dict | None = None, command: str = "",
              log=None, generator=None) -> dict:
  """Runs ``sections`` on ``checkpoint``; writes out_dir/results.md (and
  results.json, each section's own report in out_dir/<section>).

  ``generator``: the checkpoint's Generator, when the caller has it loaded
  already (a second page of the same run skips the load and reuses its
  compiled programs).
  """
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  unknown = [s for s in sections if s not in SECTIONS]
  if unknown:
    raise suite_lib.EvaluationError(
        f"paper: unknown section {unknown[0]!r}; known: {', '.join(SECTIONS)}")
  os.makedirs(out_dir, exist_ok=True)
  gen = generator or suite_lib.load(checkpoint)
  weights = {"model": 10, "speed": 1, "experiment1": 6, "experiment2": 12,
             "experiment3": 8}
  prog = suite_lib.Progress({s: weights[s] for s in sections})
  results = {"provenance": provenance(checkpoint, gen.config, seed,
                                      budget.to_json(), command),
             "sections": {}}
  timings = {}
  instruments = None
  if "model" in sections:
    instruments = plugged.select_instruments(
        gen.config, plugged.CORPUS, plugged.CORPUS,
        overrides=instrument_overrides)
  for name in sections:
    t = time.perf_counter()
    sub = os.path.join(out_dir, name)
    if name == "model":
      data = _model_section(gen, instruments, sub, checkpoint, seed, budget,
                            log)
    elif name == "speed":
      from csm_jax.eval.prompts import build_prompts  # pylint: disable=g-import-not-at-top
      prompts = build_prompts(gen.config, budget.speed_texts,
                              gen.codec.sample_rate)
      data = measure_speed(gen, [p.target.text for p in prompts], seed)
    elif name == "experiment1":
      from csm_jax.eval.experiment1 import run_experiment1  # pylint: disable=g-import-not-at-top
      log("paper: experiment 1 (next-word probe)")
      data = run_experiment1(checkpoint, sub, seed=seed, log=log,
                             probe_steps=budget.probe_steps,
                             instrument_overrides=instrument_overrides)
    elif name == "experiment2":
      data = _experiment2(checkpoint, sub, seed, budget,
                          instrument_overrides, log)
    else:
      data = _experiment3(checkpoint, sub, seed, budget,
                          instrument_overrides, log)
    timings[name] = time.perf_counter() - t
    results["sections"][name] = data
    results["provenance"]["seconds"] = timings
    # The page so far, after every section: a later section that fails
    # loses nothing before it.
    _write(results, out_dir)
    prog(name)
  log(f"paper: {os.path.join(out_dir, 'results.md')}")
  return results


def _write(results: dict, out_dir: str) -> None:
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(report_lib.json_ready(results), f, indent=1, default=str)
  write_page(results, out_dir)

