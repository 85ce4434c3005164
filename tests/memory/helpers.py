"""Small memory configs, models and batches shared by the memory tests."""

import numpy as np
from flax import nnx

from csm_jax.data.examples.memory_synthetic import SyntheticMemorySource
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config


def memory_config(enabled=True, weights=0.0, **memory):
  """The tiny test CSM on synthetic memory conversations."""
  c = tiny_config(data__seq_len=48, data__context_turns=1)
  mem = c.model.memory
  mem.enabled = enabled
  mem.turns, mem.turn_rows, mem.dim = 5, 24, 16
  for key in ("semantic", "dynamics", "character"):
    mem[f"{key}_weight"] = weights
  for key, value in memory.items():
    node = mem
    parts = key.split("__")
    for p in parts[:-1]:
      node = node[p]
    node[parts[-1]] = value
  return c


def build(config, seed=0):
  return CSM(config.model, nnx.Rngs(params=seed))


def batch_of(config, n=4, seed=0, start=0):
  src = SyntheticMemorySource(config, start + n, seed)
  items = [src[i] for i in range(start, start + n)]
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


def turn_window(batch):
  """A batch's memory turns as ``memory.memory_from_turns`` reads them."""
  from csm_jax.model.memory_loss import memory_turns
  return memory_turns(batch)


def one_turn(window, j):
  """Turn j of a window, as ``memory.update`` reads it."""
  return {k: v[:, j] for k, v in window.items()}
