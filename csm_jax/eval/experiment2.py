"""Experiment 2 (research plan): does prosodic memory keep a character?

Question: over conversations longer than the raw context window, does the
dual memory (``model.memory``) keep each speaker's voice better than raw
in-window context alone, and is it the prosodic bank, with its slow decay,
that does it? The plan's success criterion is twice the character
consistency of the no-memory model.

One command (``python -m csm_jax.evaluate --suite=experiment2
--checkpoint=BASE``) does everything:

1. Trains the seven configurations of ``VARIANTS`` from the same trained
   CSM (``train.init_from=BASE``; the memory starts fresh) on the long
   corpus (12-20 turns, speakers with personas; built if missing), at
   equal compute: each gets the steps that the training FLOPs of
   ``steps`` steps of the full dual memory buy (``count_flops`` +
   ``memory_flops``), so the no-memory baseline trains longest. A finished
   run is reused and a killed one resumes from its checkpoint.
2. Replays every held-out long conversation with each model through
   ``inference.Conversation``: the first ``SEED_TURNS`` ground-truth turns
   are given with their audio, then the model speaks every later turn's
   text as its speaker, hearing its own earlier turns (and carrying its
   memory).
3. Scores character consistency per generated turn: the cosine similarity
   of the turn's speaker embedding (the speaker encoder trained on the
   embedded corpus, whose ten voices the long corpus shares) to that
   speaker's ground-truth voice (the mean embedding of their held-out
   turns). The ground-truth turns scored the same way are the ceiling.

Reports the mean per configuration with its bootstrap interval over turns,
the ratio to the no-memory model on the same turns (paired bootstrap), the
mean against the turn index (``consistency_vs_turn.png``), and the time to
first audio per turn.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import numpy as np

from csm_jax.config import memory as memory_config
from csm_jax.eval import stats
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.prompts import conversations
from csm_jax.eval.suite import (EvaluationError, Progress, default_sampling,
                                load)
from csm_jax.eval.variants import (continuation, finished, load_base,
                                   with_defaults)
from csm_jax.inference.conversation import Conversation
from csm_jax.model.loss import count_flops
from csm_jax.model.memory_loss import memory_flops
from csm_jax.training.run import train_and_evaluate

SEED_TURNS = 2       # ground-truth turns given before the model speaks
MIN_TURNS = 10       # generated turns a held-out conversation must give
CORPUS_SIZE = "long"
BASELINE = "no_memory"

_ON = {"model.memory.enabled": True}
# name -> (what it tests, config overrides on top of the base run's config)
VARIANTS: dict[str, tuple[str, dict]] = {
    "no_memory": ("raw in-window context only",
                  {"model.memory.enabled": False}),
    "dual": ("both banks, semantic fast (0.5-0.9), prosodic slow (0.8-0.98)",
             dict(_ON)),
    "semantic_only": ("the semantic bank alone",
                      {**_ON, "model.memory.prosodic.slots": 0}),
    "prosodic_only": ("the prosodic bank alone",
                      {**_ON, "model.memory.semantic.slots": 0}),
    "equal_gamma": ("both banks with the same decays (0.5-0.98)",
                    {**_ON, "model.memory.semantic.decay_slow": 0.98,
                     "model.memory.prosodic.decay_fast": 0.5}),
    "swapped_gamma": ("semantic slow (0.8-0.98), prosodic fast (0.5-0.9)",
                      {**_ON, "model.memory.semantic.decay_fast": 0.8,
                       "model.memory.semantic.decay_slow": 0.98,
                       "model.memory.prosodic.decay_fast": 0.5,
                       "model.memory.prosodic.decay_slow": 0.9}),
    "no_decay": ("gamma = 1: every slot the plain mean of all turns",
                 {**_ON, **{f"model.memory.{b}.decay_{k}": 1.0
                            for b in ("semantic", "prosodic")
                            for k in ("fast", "slow")}}),
}


def variant_config(base, base_dir: str, name: str, steps: int):
  """The training config of variant ``name`` (``steps`` of its own)."""
  return continuation(
      base, base_dir, steps,
      {"data.corpus_size": CORPUS_SIZE, **VARIANTS[name][1]})


def step_flops(config) -> float:
  """Training FLOPs of one step (the trainer's own count)."""
  b = int(config.data.batch_size)
  f = count_flops(config, b)
  if memory_config.enabled(config.model):
    f += memory_flops(config, b)
  return float(f)


def equal_compute_steps(base, base_dir: str, steps: int,
                        names) -> dict[str, int]:
  """Steps per variant whose FLOPs equal ``steps`` of the dual memory."""
  budget = steps * step_flops(variant_config(base, base_dir, "dual", steps))
  return {n: max(1, int(round(budget / step_flops(
      variant_config(base, base_dir, n, steps))))) for n in names}


@dataclasses.dataclass
class Scored:
  similarity: list        # per generated turn (conversation order)
  turn_index: list        # its index in the conversation
  conversation: list      # its conversation id
  first_audio_s: list     # time to the first chunk of each reply
  seconds: list           # generated duration
  turn_s: list = dataclasses.field(default_factory=list)  # whole reply


def _references(instruments, convs, sr) -> dict:
  by_speaker: dict[int, list] = {}
  for _, _, turns in convs:
    for t in turns:
      by_speaker.setdefault(t.speaker, []).append(t.audio)
  refs = {}
  for s, audios in by_speaker.items():
    m = instruments.speaker_embeddings(audios, sr).mean(axis=0)
    refs[s] = m / max(np.linalg.norm(m), 1e-9)
  return refs


def _similarity(instruments, refs, speaker, audio, sr) -> float:
  if not len(audio) or speaker not in refs:
    return float("nan")
  return float(np.dot(instruments.speaker_embeddings([audio], sr)[0],
                      refs[speaker]))


def ground_truth(instruments, convs, refs, sr) -> Scored:
  out = Scored([], [], [], [], [])
  for cid, _, turns in convs:
    for i, t in enumerate(turns[SEED_TURNS:], SEED_TURNS):
      out.similarity.append(_similarity(instruments, refs, t.speaker,
                                        t.audio, sr))
      out.turn_index.append(i)
      out.conversation.append(cid)
      out.first_audio_s.append(float("nan"))
      out.seconds.append(len(t.audio) / sr)
  return out


def replay(gen, instruments, convs, refs, seed: int,
           progress=None) -> Scored:
  """Every held-out conversation spoken by ``gen`` after its seed turns."""
  sr = gen.codec.sample_rate
  out = Scored([], [], [], [], [])
  total = sum(len(t) - SEED_TURNS for _, _, t in convs)
  done = 0
  for cid, _, turns in convs:
    conv = Conversation(gen, default_sampling(seed))
    for t in turns[:SEED_TURNS]:
      # Their phoneme timings lay them out as training does (aligned).
      conv.add_turn(t.text, t.speaker, t.audio, t.alignment)
    for i, t in enumerate(turns[SEED_TURNS:], SEED_TURNS):
      conv.sampling = dataclasses.replace(
          conv.sampling, seed=seed + i,
          max_seconds=min(10.0, 1.5 * len(t.audio) / sr + 1.0))
      t0 = time.perf_counter()
      r = conv.reply(t.text, t.speaker, allow_empty=True)
      out.turn_s.append(time.perf_counter() - t0)
      out.first_audio_s.append(r["first_chunk_s"])
      audio = np.clip(r["audio"], -1.0, 1.0).astype(np.float32)
      out.similarity.append(_similarity(instruments, refs, t.speaker, audio,
                                        sr))
      out.turn_index.append(i)
      out.conversation.append(cid)
      out.seconds.append(len(audio) / sr)
      done += 1
      if progress:
        progress(done / max(total, 1))
  return out


def _per_turn(scored: Scored) -> dict:
  by: dict[int, list] = {}
  for i, s in zip(scored.turn_index, scored.similarity):
    if np.isfinite(s):
      by.setdefault(int(i), []).append(s)
  return {i: float(np.mean(v)) for i, v in sorted(by.items())}


def summarize(rows: dict[str, Scored], seed: int) -> dict:
  base = rows.get(BASELINE)
  out = {}
  for name, r in rows.items():
    entry = {"consistency": stats.mean(r.similarity, seed=seed).to_json(),
             "per_turn": _per_turn(r),
             "generated_seconds": float(np.nansum(r.seconds))}
    ttfa = [x for x in r.first_audio_s if np.isfinite(x)]
    if ttfa:
      entry["first_audio_s_median"] = float(np.median(ttfa))
    if base is not None and name != BASELINE and name != "ground_truth":
      a, b = np.asarray(r.similarity), np.asarray(base.similarity)
      keep = np.isfinite(a) & np.isfinite(b)
      entry["ratio_to_no_memory"] = stats.ratio(a[keep], b[keep],
                                                seed=seed).to_json()
      entry["difference_to_no_memory"] = stats.paired(a, b,
                                                      seed=seed).to_json()
    out[name] = entry
  return out


def _fmt(e: dict | None) -> str:
  if not e or not np.isfinite(e["value"]):
    return "n/a"
  return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def markdown(summary: dict, steps: dict, meta: dict) -> str:
  lines = ["# Experiment 2: prosodic memory and character consistency", "",
           f"Base model `{meta['base']}`, corpus `{CORPUS_SIZE}`: "
           f"{meta['conversations']} held-out conversations, "
           f"{meta['turns']} generated turns per model (after "
           f"{SEED_TURNS} ground-truth turns each). Character consistency: "
           "cosine similarity of each turn's speaker embedding to the "
           "speaker's ground-truth voice; 95% bootstrap intervals over "
           "turns; ratios and differences paired on the same turns.", "",
           "| configuration | steps (equal FLOPs) | consistency | ratio to "
           "no memory | difference | first audio (median s) |",
           "|---|---|---|---|---|---|"]
  for name, e in summary.items():
    lines.append(
        f"| {name} | {steps.get(name, '-')} | {_fmt(e['consistency'])} | "
        f"{_fmt(e.get('ratio_to_no_memory'))} | "
        f"{_fmt(e.get('difference_to_no_memory'))} | "
        f"{e.get('first_audio_s_median', float('nan')):.3f} |")
  lines += ["", "Configurations:", ""]
  lines += [f"- `{n}`: {VARIANTS[n][0]}" for n in steps]
  lines += ["", "The plan's success criterion is a ratio of 2 to the "
            "no-memory model.", "", "![consistency against the turn index]"
            "(consistency_vs_turn.png)"]
  return "\n".join(lines) + "\n"


def plot(summary: dict, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for name, e in summary.items():
    pts = sorted((int(k), v) for k, v in e["per_turn"].items())
    if not pts:
      continue
    x, y = zip(*pts)
    style = dict(color="black", linestyle="--") if name == "ground_truth" \
        else {}
    ax.plot(x, y, marker="o", markersize=3, label=name, **style)
  ax.set_xlabel("turn index in the conversation")
  ax.set_ylabel("speaker similarity to the speaker's voice")
  ax.set_title("Character consistency against the turn index")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_experiment2(checkpoint: str, out_dir: str, steps: int = 200,
                    seed: int = 0, variants=None,
                    max_conversations: int | None = None,
                    instrument_overrides: dict | None = None,
                    out=sys.stdout) -> dict:
  """Trains the variants from ``checkpoint`` and scores them; see the
  module docstring. Returns the report as a dict (also report.json)."""
  names = list(variants or VARIANTS)
  unknown = [n for n in names if n not in VARIANTS]
  if unknown:
    raise EvaluationError(f"experiment2: unknown configuration {unknown[0]!r}"
                          f"; known: {', '.join(VARIANTS)}")
  if BASELINE not in names:
    names.insert(0, BASELINE)
  if steps < 1:
    raise EvaluationError(f"--train_steps: must be at least 1, got {steps}")
  base = load_base(checkpoint)
  base_dir = os.path.abspath(checkpoint)
  os.makedirs(out_dir, exist_ok=True)
  plan = equal_compute_steps(base, base_dir, steps, names)
  # ETA weights: a step of training about 1 unit, a replayed model
  # (dozens of turns) about 40% of the dual memory's training.
  prog = Progress({**{f"train {n}": plan[n] for n in names},
                   **{f"speak {n}": 0.4 * steps for n in names},
                   "instruments": 0.1 * steps})
  workdirs = {}
  for n in names:
    wd = os.path.join(out_dir, "runs", n)
    workdirs[n] = wd
    if not finished(wd, plan[n]):
      print(f"experiment2: training {n} for {plan[n]} steps in {wd}",
            file=out, flush=True)
      train_and_evaluate(variant_config(base, base_dir, n, plan[n]), wd)
    prog(f"train {n}")
  gen0 = load(workdirs[names[0]], "experiment2")
  # The long corpus's voices are the embedded corpus's ten: its instruments
  # (trained once, cached) measure them; their validity is in the report.
  inst_cfg = with_defaults(gen0.config)
  inst_cfg.data.corpus_size = "default"
  instruments = ensure_instruments(inst_cfg, overrides=instrument_overrides)
  prog("instruments")
  sr = gen0.codec.sample_rate
  convs = [c for c in conversations(gen0.config, sr)
           if len(c[2]) - SEED_TURNS >= MIN_TURNS]
  if max_conversations:
    convs = convs[:max_conversations]
  if not convs:
    raise EvaluationError(f"experiment2: no held-out conversation of the "
                          f"{CORPUS_SIZE} corpus has {SEED_TURNS + MIN_TURNS}"
                          " turns or more")
  refs = _references(instruments, convs, sr)
  rows = {"ground_truth": ground_truth(instruments, convs, refs, sr)}
  for n in names:
    gen = gen0 if n == names[0] else load(workdirs[n], "experiment2")
    rows[n] = replay(gen, instruments, convs, refs, seed,
                     progress=lambda f, n=n: prog(f"speak {n}", f)
                     if f < 1 else None)
    prog(f"speak {n}")
  summary = summarize(rows, seed)
  meta = {"base": checkpoint, "conversations": len(convs),
          "turns": len(rows["ground_truth"].similarity),
          "train_steps": plan, "step_flops": {
              n: step_flops(variant_config(base, base_dir, n, plan[n]))
              for n in names},
          "instrument_validity": instruments.validity}
  report = {"meta": meta, "summary": summary,
            "turns": {k: dataclasses.asdict(v) for k, v in rows.items()}}
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=1, default=float)
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write(markdown(summary, plan, meta))
  plot(summary, os.path.join(out_dir, "consistency_vs_turn.png"))
  print(markdown(summary, plan, meta), file=out)
  print(f"report: {os.path.join(out_dir, 'report.md')}", file=out)
  return report

