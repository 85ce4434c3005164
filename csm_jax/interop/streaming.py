"""Filling our parameters from a checkpoint one source tensor at a time.

A conversion is a list of ``Recipe``s, one per parameter of ours: the
source tensors it is made of (one, or one per layer of a stack) and the
function that puts one of them into our layout. ``check`` compares every
recipe's sources with the checkpoint's header before any data is read.
``deferred`` then gives each of our parameters as a leaf that, when asked,
allocates it in the dtype it is stored in and converts into it source by
source; the export's save (``store.export``) asks for one at a time and
writes it before making the next. ``fill`` makes them all at once, in
memory. Besides the parameter being made, only the tensor being converted
is in memory (as float32, plus what ``fn`` makes of it), so a checkpoint
converts and writes in about the memory of its largest parameter and its
largest tensor, not of the export, let alone several times the file.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from csm_jax.interop.mapping import TensorMap
from csm_jax.interop.safetensors_io import Checkpoint, ConversionError
from csm_jax.store import models
from csm_jax.store.export import Deferred


def unchanged(t: np.ndarray) -> np.ndarray:
  """A source already in our layout."""
  return t


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How one of our parameters (dotted path ``ours``) is made: ``fn`` of
  its one source, or, ``stacked``, ``fn`` of each layer's source stacked
  on a leading axis. Every source has ``shape``."""

  ours: str
  sources: tuple[str, ...]
  shape: tuple[int, ...]
  fn: Callable[[np.ndarray], np.ndarray] = unchanged
  stacked: bool = False


def check(tm: TensorMap, recipes: Sequence[Recipe]) -> None:
  """Raises one ConversionError for every source that is missing or
  misshapen and every tensor no recipe uses; reads no data."""
  for r in recipes:
    for source in r.sources:
      tm.expect(source, r.shape)
  tm.finish()


def _convert_into(ckpt: Checkpoint, source: str, fn, dst: np.ndarray,
                  model_dtype, what: str) -> None:
  """``fn`` of one source tensor, written into ``dst`` (cast on write)."""
  with ckpt.float32(source) as t:
    v = fn(t)
    if tuple(v.shape) != tuple(dst.shape):
      raise ConversionError(f"{what}: {source} converts to shape "
                            f"{tuple(v.shape)}, our model has "
                            f"{tuple(dst.shape)}")
    if v.dtype != model_dtype:
      # The model's own dtype first, as the weights it would hold.
      v = v.astype(model_dtype)
    dst[...] = v


def _aligned_empty(shape, dtype, align: int = 64) -> np.ndarray:
  """An uninitialised array whose data starts on an ``align``-byte
  boundary, which jax's CPU client needs to use it without a copy."""
  dtype = np.dtype(dtype)
  nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  raw = np.empty(nbytes + align, np.uint8)
  start = -raw.ctypes.data % align
  return raw[start:start + nbytes].view(dtype).reshape(shape)


def deferred(abstract_state, recipes: Sequence[Recipe], ckpt: Checkpoint,
             dtype: str, what: str):
  """``abstract_state`` with every leaf a ``store.export.Deferred``: its
  recipe's conversion, run only when asked for (by the export's save, which
  writes each one and drops it before making the next), in ``dtype``
  (floating leaves; others keep theirs), as a jax array.

  Every leaf is matched with its recipe here, before any is converted: a
  leaf without a recipe, a recipe without a leaf or a stack of another
  depth is a mapping defect, reported by name. ``ckpt`` must stay open
  until the leaves are made.
  """
  by_name = {r.ours: r for r in recipes}
  store = jnp.dtype(dtype)
  used = set()

  def one(path, leaf):
    name = models.dotted(path)
    r = by_name.get(name)
    if r is None:
      raise ConversionError(f"{what}: no converted value for our {name} "
                            f"{tuple(leaf.shape)}")
    if r.stacked and (not leaf.shape or leaf.shape[0] != len(r.sources)):
      raise ConversionError(f"{what}: {len(r.sources)} layers for our {name}"
                            f" of shape {tuple(leaf.shape)}")
    used.add(name)
    model_dtype = np.dtype(leaf.dtype)
    floating = jnp.issubdtype(model_dtype, jnp.floating)
    out_dtype = store if floating else model_dtype

    def make():
      out = _aligned_empty(leaf.shape, out_dtype)
      for i, source in enumerate(r.sources):
        _convert_into(ckpt, source, r.fn, out[i, ...] if r.stacked else out,
                      model_dtype, what)
      # Handed to jax as it is: a CPU device adopts an aligned buffer
      # without copying it (``jnp.asarray`` peaks at three copies), and
      # Orbax saves jax arrays with one copy fewer than numpy ones.
      return jax.device_put(out)

    return Deferred(leaf.shape, out_dtype, make)

  state = jax.tree_util.tree_map_with_path(one, abstract_state)
  extra = sorted(set(by_name) - used)
  if extra:
    raise ConversionError(f"{what}: converted values {extra[:5]} have no "
                          "place in our model")
  return state


def fill(abstract_state, recipes: Sequence[Recipe], ckpt: Checkpoint,
         dtype: str, what: str):
  """``deferred``'s leaves all made now: every parameter converted, as jax
  arrays in memory (one source tensor at a time)."""
  return jax.tree.map(lambda d: d.make(),
                      deferred(abstract_state, recipes, ckpt, dtype, what))
