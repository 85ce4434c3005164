"""Taking a checkpoint's tensors by name, with every problem reported at once.

A name mapping (``csm_names``, ``mimi_names``) asks ``TensorMap.take`` for
each source tensor it needs, with the shape it must have. Missing names,
wrong shapes and names that nothing took are collected and raised together
by ``finish`` as one ``ConversionError`` naming the file and the tensors, so
nothing is written for a checkpoint that does not match.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from csm_jax.interop.safetensors_io import ConversionError

_SHOWN = 12


class TensorMap:
  """The tensors of one checkpoint file, handed out by name and shape."""

  def __init__(self, path: str, tensors: dict[str, np.ndarray], model: str,
               example_names: Sequence[str]):
    self.path, self.tensors, self.model = path, tensors, model
    self.example_names = tuple(example_names)
    self.used: set[str] = set()
    self.missing: list[str] = []
    self.mismatched: list[str] = []

  def has(self, name: str) -> bool:
    return name in self.tensors

  def take(self, name: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor ``name`` as float32, or zeros (recorded) when it is
    missing or has another shape."""
    shape = tuple(int(s) for s in shape)
    if name not in self.tensors:
      self.missing.append(f"{name} {shape}")
      return np.zeros(shape, np.float32)
    self.used.add(name)
    t = self.tensors[name]
    if tuple(t.shape) != shape:
      self.mismatched.append(f"{name}: {tuple(t.shape)}, expected {shape}")
      return np.zeros(shape, np.float32)
    return np.asarray(t, np.float32)

  def skip(self, name: str) -> None:
    """Marks a tensor as known but unused (e.g. an "initialized" flag)."""
    if name in self.tensors:
      self.used.add(name)

  def finish(self) -> None:
    """Raises one ConversionError for every problem found so far."""
    unexpected = sorted(set(self.tensors) - self.used)
    if not (self.missing or self.mismatched or unexpected):
      return
    if len(self.used) < max(1, len(self.tensors) // 4):
      found = ", ".join(sorted(self.tensors)[:4])
      raise ConversionError(
          f"{self.path}: not a {self.model} checkpoint: {len(self.missing)} "
          f"expected tensors are missing (e.g. "
          f"{', '.join(self.example_names[:2])}) and it holds others (e.g. "
          f"{found})")
    parts = []
    for title, items in (("unexpected shape", self.mismatched),
                         ("missing", self.missing),
                         ("unexpected name", unexpected)):
      if items:
        more = f" (+{len(items) - _SHOWN} more)" if len(items) > _SHOWN else ""
        parts.append(f"{title}: " + "; ".join(items[:_SHOWN]) + more)
    raise ConversionError(f"{self.path}: does not match the {self.model} "
                          "config: " + " | ".join(parts))


def interleaved_to_halves(w: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
  """Rows (heads * head_dim, in) of a q/k projection whose rotary embedding
  rotates interleaved pairs (0,1), (2,3), ..., reordered per head to
  [0, 2, 4, ..., 1, 3, 5, ...] for an embedding that rotates halves.

  Returns (heads, head_dim, in).
  """
  order = np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])
  return w.reshape(heads, head_dim, -1)[:, order, :]
