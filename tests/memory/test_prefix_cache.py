"""Prefix caching between turns: a conversation keeps its KV cache, a new
reply prefills only its own rows, and without the memory (and before any
turn leaves the window) it decodes exactly what a fresh prefill decodes."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.inference import conversation as conv_lib
from csm_jax.inference import prefix_cache
from csm_jax.inference.generator import Generator, Sampling
from tests.memory.helpers import build, memory_config
from tests.memory.test_memory_generation import CharTokenizer, ToyCodec

pytestmark = pytest.mark.filterwarnings(
    "ignore::csm_jax.data.examples.frames.ContextTrimmed")

GREEDY = Sampling(top_k=1, max_seconds=0.08 * 3, frames_per_call=2,
                  min_seconds=0.08 * 2)


def _gen(enabled=False, seq_len=128, context_turns=8):
  c = memory_config(enabled=enabled)
  c.data.seq_len = seq_len
  c.data.context_turns = context_turns
  model = build(c)
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, CharTokenizer(), ToyCodec(),
                   weight_dtype=None)


def _tone(seconds, f=220.0):
  t = np.arange(int(seconds * ToyCodec.sample_rate)) / ToyCodec.sample_rate
  return (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def _play(conv, replies):
  conv.add_turn("hello there", 0, _tone(0.3))
  out = []
  for i in range(replies):
    out.append(conv.reply(f"reply number {i}", (i + 1) % 2)["codes"])
  return out


def test_cached_replies_equal_fresh_prefills_without_memory():
  gen = _gen()
  cached = conv_lib.Conversation(gen, GREEDY)
  fresh = conv_lib.Conversation(gen, GREEDY, prefix_cache=False)
  assert cached.cache is not None and fresh.cache is None
  a, b = _play(cached, 3), _play(fresh, 3)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  # Later replies reused the earlier turns' rows instead of prefilling them.
  assert cached.cache.stats["rows_reused"] > 0
  assert cached.cache.stats["rebuilds"] == 0


def test_the_kept_cache_predicts_what_a_fresh_prefill_predicts():
  gen = _gen()
  conv = conv_lib.Conversation(gen, GREEDY)
  _play(conv, 2)
  text, spk = "and one more", 1
  context = conv.context()
  state = conv.cache.prepare(context, text, spk, None, GREEDY)
  rows = gen.prompt_rows(text, spk, context,
                         reserve=gen.reserve_frames(GREEDY))
  ref = gen._prefill(gen.params, gen._batch([rows], gen.reserve_frames(
      GREEDY)), None)
  np.testing.assert_allclose(np.asarray(state["h"]), np.asarray(ref["h"]),
                             rtol=2e-4, atol=2e-5)
  # Same rows in the cache, at the same RoPE positions.
  assert int(state["length"]) == len(rows["positions"])
  assert int(state["pos"][0]) == int(ref["pos"][0])


def test_a_reply_prefills_only_its_own_rows_as_turns_leave_the_window():
  gen = _gen(seq_len=48)      # a few turns fill the window
  conv = conv_lib.Conversation(gen, GREEDY)
  conv.add_turn("hello there", 0, _tone(0.3))
  prefilled = []
  for i in range(8):
    before = conv.cache.stats["rows_prefilled"]
    conv.reply(f"reply {i}", (i + 1) % 2)
    prefilled.append(conv.cache.stats["rows_prefilled"] - before)
  text_rows = [len(CharTokenizer().encode_turn((i + 1) % 2, f"reply {i}"))
               for i in range(8)]
  # After the first reply, only the new turn's text rows are prefilled,
  # although older turns keep leaving the 48-row window.
  assert prefilled[1:] == text_rows[1:]
  assert conv.cache.stats["rebuilds"] == 0
  live = int(np.sum(np.asarray(conv.cache.state["seg"]) != 0))
  assert live == int(conv.cache.state["length"]) <= gen.max_len


def test_dropping_slots_moves_the_later_ones_down():
  k = jnp.arange(10, dtype=jnp.float32).reshape(1, 10, 1, 1)
  state = {"k": [k], "v": [k + 100], "seg": jnp.ones((1, 10), jnp.int32),
           "length": jnp.int32(8), "pos": jnp.zeros((1,), jnp.int32),
           "h": jnp.zeros((1, 2))}
  out = prefix_cache.drop_slots(state, 2, 3)
  assert int(out["length"]) == 5
  np.testing.assert_array_equal(np.asarray(out["k"][0])[0, :5, 0, 0],
                                [0, 1, 5, 6, 7])
  np.testing.assert_array_equal(np.asarray(out["seg"])[0],
                                [1, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def test_the_memory_prefix_is_rewritten_exactly():
  gen = _gen(enabled=True)
  conv = conv_lib.Conversation(gen, GREEDY)
  _play(conv, 2)
  context = conv.context()
  state = conv.cache.prepare(context, "again", 0, conv.memory, GREEDY)
  rows = gen.prompt_rows("again", 0, context,
                         reserve=gen.reserve_frames(GREEDY))
  ref = gen._prefill(gen.params, gen._batch([rows], gen.reserve_frames(
      GREEDY)), gen.memory.prefix(conv.memory))
  p = gen.prefix_slots
  for got, want in zip(state["k"], ref["k"]):
    np.testing.assert_allclose(np.asarray(got)[:, :p],
                               np.asarray(want)[:, :p], rtol=1e-4, atol=1e-5)
  # The memory replies keep working through the cache.
  out = conv.reply("a last one", 1)
  assert len(out["codes"]) and out["memory_turns"] == 4
