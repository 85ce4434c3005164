"""Continuous batching throughput: requests of mixed lengths through B slots.

``python -m csm_jax.bench serve --workdir=RUN --batches=1,2,4,8`` loads a
trained run (or an export) and serves the same 16 requests (texts and
lengths of 0.5-3 s mixed, each with its own seed, each allowed to end on
its own end of speech) through a ``Server`` of B slots, one figure per B,
in one process: frames/s (every frame generated and decoded to audio,
over wall time), its ratio to B = 1 (one request at a time through the
same code), and the median time from submission to first audio. Every
shape is compiled by a warm-up pass first.
"""

from __future__ import annotations

import time

import numpy as np

from csm_jax.inference.generator import Sampling
from csm_jax.inference.loading import load_generator
from csm_jax.inference.serving import serve_all

TEXTS = ("Are you coming tonight?", "I think so.",
         "The bus leaves at seven, so we should hurry.",
         "Fine.", "Tell me about the trip you took last summer.",
         "We drove along the coast for a week and slept in small towns.",
         "That sounds lovely.", "Next year I want to go again.")


def requests(n: int = 16) -> list[dict]:
  lengths = (0.5, 3.0, 1.0, 2.0, 1.5, 2.5)
  return [dict(text=TEXTS[i % len(TEXTS)], speaker=i % 2, seed=i,
               max_seconds=lengths[i % len(lengths)]) for i in range(n)]


def bench_serve(workdir: str, batches=(1, 2, 4, 8), n_requests: int = 16,
                frames_per_call: int = 4) -> dict:
  gen = load_generator(workdir)
  s = Sampling(frames_per_call=frames_per_call)
  reqs = requests(n_requests)
  out = {"workdir": workdir, "requests": n_requests,
         "frames_per_call": frames_per_call}
  base = None
  for b in batches:
    serve_all(gen, reqs[:b + 1], b, s)          # compiles this B's shapes
    t0 = time.perf_counter()
    got = serve_all(gen, reqs, b, s)
    wall = time.perf_counter() - t0
    frames = sum(len(r["codes"]) for r in got.values())
    fps = frames / wall
    base = base or fps
    out[f"slots{b}_frames_per_s"] = fps
    out[f"slots{b}_ratio_to_slots1"] = fps / base
    out[f"slots{b}_first_audio_s_median"] = float(np.median(
        [r["first_chunk_s"] for r in got.values()]))
    out[f"slots{b}_frames"] = frames
  return out
