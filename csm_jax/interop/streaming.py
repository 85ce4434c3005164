"""Filling our parameters from a checkpoint one source tensor at a time.

A conversion is a list of ``Recipe``s, one per parameter of ours: the
source tensors it is made of (one, or one per layer of a stack) and the
function that puts one of them into our layout. ``check`` compares every
recipe's sources with the checkpoint's header before any data is read;
``fill`` then allocates each parameter in the dtype it is stored in and
converts into it source by source. Besides the output, only the tensor
being converted is in memory (as float32, plus what ``fn`` makes of it), so
a checkpoint converts in about the memory of its export plus its largest
tensor, not several times the file.
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


def fill(abstract_state, recipes: Sequence[Recipe], ckpt: Checkpoint,
         dtype: str, what: str):
  """``abstract_state`` with every leaf converted by its recipe, in
  ``dtype`` (floating leaves; others keep theirs), as jax arrays.

  Each leaf is filled as a numpy array, then handed to jax before the next
  one starts (Orbax's save copies numpy leaves once more than jax ones).

  A leaf without a recipe, a recipe without a leaf or a result of another
  shape is a mapping defect, reported by name.
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
    out = np.empty(leaf.shape, store if floating else model_dtype)
    for i, source in enumerate(r.sources):
      _convert_into(ckpt, source, r.fn, out[i, ...] if r.stacked else out,
                    model_dtype, what)
    return jnp.asarray(out)

  state = jax.tree_util.tree_map_with_path(one, abstract_state)
  extra = sorted(set(by_name) - used)
  if extra:
    raise ConversionError(f"{what}: converted values {extra[:5]} have no "
                          "place in our model")
  return state
