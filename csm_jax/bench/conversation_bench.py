"""Per-turn cost of a long conversation: is it flat in the turn index?

``python -m csm_jax.bench conversation --workdir=RUN --turns=12`` loads a
trained run (or an export) and speaks a ``--turns``-turn two-speaker
conversation (one recorded turn, resynthesized by the run's codec, then
the model replies as each speaker in turn) twice, in one process:

- ``cached``: ``Conversation`` keeps its KV cache between turns
  (``inference.prefix_cache``): each reply prefills only its own text rows;
- ``prefilled``: every reply prefills its whole prompt (memory prefix,
  the context turns that fit, its text).

A warm-up conversation first compiles every shape, so the figures are
steady-state. Per turn: time to first audio (prompt + first chunk + its
codec decode), rows prefilled, and the memory's turn count. The flatness
figure is turn ``late`` (default 10) over turn 1 of the same conversation,
median over ``repeats`` conversations.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from csm_jax.inference.conversation import Conversation
from csm_jax.inference.generator import Sampling
from csm_jax.inference.loading import load_generator

LINES = ("Are you coming to the market tomorrow morning?",
         "I think so, if the weather holds and the car starts.",
         "Last time it rained the whole day and we left early.",
         "Then bring a coat, and we can stay for lunch.",
         "That sounds good. Should we invite your brother too?",
         "He is busy this week, but I will ask him anyway.")


def _one(gen, turns: int, sampling: Sampling, cached: bool, seed: int):
  sampling = dataclasses.replace(sampling, seed=seed)
  conv = Conversation(gen, sampling, prefix_cache=cached)
  first = gen.generate("Hello, it is good to hear from you again.", 0,
                       sampling=sampling)
  conv.add_turn("Hello, it is good to hear from you again.", 0,
                first["audio"] if len(first["audio"]) else None)
  rows = []
  for i in range(turns):
    before = (conv.cache.stats["rows_prefilled"] if conv.cache else 0)
    t0 = time.perf_counter()
    out = conv.reply(LINES[i % len(LINES)], (i + 1) % 2, allow_empty=True)
    rows.append({"turn": i + 1, "first_audio_s": out["first_chunk_s"],
                 "turn_s": time.perf_counter() - t0,
                 "seconds": out["seconds"],
                 "rows_prefilled": (conv.cache.stats["rows_prefilled"]
                                    - before) if conv.cache else None,
                 "memory_turns": out["memory_turns"]})
  return rows


def bench_conversation(workdir: str, turns: int = 12, repeats: int = 3,
                       late: int = 10, max_seconds: float = 2.0) -> dict:
  if turns < late:
    raise ValueError(f"--turns={turns} is fewer than turn {late} compared")
  gen = load_generator(workdir)
  sampling = Sampling(max_seconds=max_seconds, min_seconds=0.5,
                      frames_per_call=8)
  for cached in (True, False):        # compile every shape first
    _one(gen, turns, sampling, cached, 0)
  out = {"workdir": workdir, "turns": turns, "repeats": repeats,
         "memory": gen.memory is not None}
  for cached in (True, False):
    name = "cached" if cached else "prefilled"
    runs = [_one(gen, turns, sampling, cached, r) for r in range(repeats)]
    ttfa = np.asarray([[r["first_audio_s"] for r in run] for run in runs])
    ratio = ttfa[:, late - 1] / ttfa[:, 0]
    out[f"{name}_first_audio_ms_per_turn"] = [
        round(float(x) * 1e3, 1) for x in np.median(ttfa, axis=0)]
    out[f"{name}_turn{late}_over_turn1"] = float(np.median(ratio))
    out[f"{name}_turn{late}_over_turn1_spread"] = float(np.ptp(ratio))
    out[f"{name}_rows_prefilled_per_turn"] = [r["rows_prefilled"]
                                              for r in runs[0]]
    out[f"{name}_memory_turns"] = [r["memory_turns"] for r in runs[0]]
  c = np.median([out["cached_first_audio_ms_per_turn"][late - 1]])
  p = np.median([out["prefilled_first_audio_ms_per_turn"][late - 1]])
  out[f"turn{late}_cached_over_prefilled"] = float(c / p) if p else \
      float("nan")
  return out
