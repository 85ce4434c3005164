"""grain pipelines: random-access source -> shuffled, process-sharded batches.

The training iterator is a grain ``DatasetIterator`` whose ``get_state()`` is
saved in every checkpoint, so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import grain
import jax
import numpy as np


def read_options(config=None, evaluation: bool = False) -> grain.ReadOptions:
  """How many host threads prepare batches and how many batches they keep
  ready: ``config.data.worker_threads`` and ``config.data.prefetch`` (2
  and 4 without a data section; 1 and 2 for held-out batches).

  grain's own defaults, 16 threads and 500 batches, suit a host with many
  cores. On two they contend with the training step for the GIL, and after
  the last step they go on filling the buffer while the final checkpoint
  waits to be written (a minute of a short codec run went to that).
  """
  if evaluation:
    return grain.ReadOptions(num_threads=1, prefetch_buffer_size=2)
  d = config.data if config is not None and "data" in config else {}
  return grain.ReadOptions(
      num_threads=int(d.get("worker_threads", 2)),
      prefetch_buffer_size=int(d.get("prefetch", 4)))


def _stack(items):
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


def _shuffled(source, seed: int, epochs=None):
  ds = grain.MapDataset.source(source)
  ds = ds[jax.process_index()::jax.process_count()]
  return ds.shuffle(seed=seed).repeat(epochs)


def train_dataset(source, local_batch_size: int, seed: int, config=None,
                  first=None):
  """Infinite, shuffled, sharded-by-process, batched IterDataset, read as
  ``read_options(config)`` says. ``first``: (another source, n batches)
  read before ``source`` (a curriculum), shuffled the same way; the
  iterator's state is still one index."""
  if first is None:
    ds = _shuffled(source, seed)
  else:
    head, n = first
    # grain concatenates finite datasets only: the rest repeats for as
    # many epochs as an index can count.
    ds = grain.MapDataset.concatenate([
        _shuffled(head, seed)[:n * local_batch_size],
        _shuffled(source, seed, epochs=2 ** 40 // max(len(source), 1))])
  ds = ds.batch(local_batch_size, drop_remainder=True, batch_fn=_stack)
  return ds.to_iter_dataset(read_options(config))


def eval_dataset(source, local_batch_size: int):
  """Finite, ordered IterDataset of held-out batches (this process's share)."""
  ds = grain.MapDataset.source(source)
  ds = ds[jax.process_index()::jax.process_count()]
  ds = ds.batch(local_batch_size, drop_remainder=True, batch_fn=_stack)
  return ds.to_iter_dataset(read_options(evaluation=True))
