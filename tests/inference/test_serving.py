"""Continuous batching: requests of different lengths join and leave a
running batch of slots, and each says what it says alone."""

import dataclasses

import numpy as np
import pytest

from csm_jax.inference import serving
from csm_jax.inference.generator import Sampling
from tests.memory.test_prefix_cache import _gen

pytestmark = pytest.mark.filterwarnings(
    "ignore::csm_jax.data.examples.frames.ContextTrimmed")

REQUESTS = [dict(text="short one", speaker=0, seed=1, max_seconds=0.08 * 2),
            dict(text="a much longer request", speaker=1, seed=2,
                 max_seconds=0.08 * 9),
            dict(text="joins later", speaker=0, seed=3,
                 max_seconds=0.08 * 5)]


@pytest.mark.parametrize("top_k", [1, 50])
def test_each_request_says_what_it_says_alone(top_k):
  gen = _gen()
  s = Sampling(top_k=top_k, frames_per_call=2, min_seconds=0.08 * 2)
  served = serving.serve_all(gen, REQUESTS, slots=2, sampling=s)
  for rid, r in zip(sorted(served), REQUESTS):
    alone = gen.generate(r["text"], r["speaker"], sampling=dataclasses.replace(
        s, seed=r["seed"], max_seconds=r["max_seconds"]))
    np.testing.assert_array_equal(served[rid]["codes"], alone["codes"])
    assert len(served[rid]["audio"]) == len(alone["audio"])


def test_a_request_joins_while_others_run_and_slots_are_freed():
  gen = _gen()
  s = Sampling(top_k=1, frames_per_call=2, min_seconds=0.08 * 2)
  server = serving.Server(gen, slots=2, sampling=s)
  ids = [server.submit(**r) for r in REQUESTS]
  steps_seen = {i: [] for i in ids}
  while server.busy:
    for rid, _ in server.step():
      steps_seen[rid].append(server.steps - 1)
  short, long_, late = ids
  started = {r: steps_seen[r][0] for r in ids}
  # The third request waited for a slot, took the short one's, and ran
  # beside the long one.
  assert started[short] == started[long_] == 0
  assert started[late] == server.finished[short] + 1
  assert started[late] <= server.finished[long_]
  assert all(r is None for r in server.slots) and not server.queue
  # One compiled advance for every step, whoever was in the batch.
  assert server._advance._cache_size() == 1
