"""Taking a checkpoint's tensors by name, with every problem reported at once.

A name mapping asks for each source tensor it needs, with the shape it must
have: ``TensorMap.take`` reads it (``mimi_names``), ``TensorMap.expect``
only checks the header's shape (``csm_names``, which reads later, one tensor
at a time). Missing names, wrong shapes and names that nothing asked for
are collected and raised together by ``finish`` as one ``ConversionError``
naming the file and the tensors, so nothing is written for a checkpoint
that does not match.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from csm_jax.interop.safetensors_io import Checkpoint, ConversionError

_SHOWN = 12


class TensorMap:
  """The tensors of one checkpoint file, handed out by name and shape."""

  def __init__(self, ckpt: Checkpoint, model: str,
               example_names: Sequence[str]):
    self.ckpt, self.path, self.model = ckpt, ckpt.path, model
    self.shapes = ckpt.shapes
    self.example_names = tuple(example_names)
    self.used: set[str] = set()
    self.missing: list[str] = []
    self.mismatched: list[str] = []

  def has(self, name: str) -> bool:
    return name in self.shapes

  def expect(self, name: str, shape: Sequence[int]) -> bool:
    """Whether the checkpoint holds ``name`` with ``shape``; records it as
    used, or as missing or misshapen. Reads no data."""
    shape = tuple(int(s) for s in shape)
    if name not in self.shapes:
      self.missing.append(f"{name} {shape}")
      return False
    self.used.add(name)
    if tuple(self.shapes[name]) != shape:
      self.mismatched.append(f"{name}: {tuple(self.shapes[name])}, "
                             f"expected {shape}")
      return False
    return True

  def take(self, name: str, shape: Sequence[int]) -> np.ndarray:
    """The tensor ``name`` as a float32 copy, or zeros (recorded) when it
    is missing or has another shape."""
    if not self.expect(name, shape):
      return np.zeros(tuple(int(s) for s in shape), np.float32)
    with self.ckpt.float32(name) as t:
      return np.array(t, np.float32)

  def skip(self, name: str) -> None:
    """Marks a tensor as known but unused (e.g. an "initialized" flag)."""
    if name in self.shapes:
      self.used.add(name)

  def finish(self) -> None:
    """Raises one ConversionError for every problem found so far."""
    unexpected = sorted(set(self.shapes) - self.used)
    if not (self.missing or self.mismatched or unexpected):
      return
    if len(self.used) < max(1, len(self.shapes) // 4):
      found = ", ".join(sorted(self.shapes)[:4])
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
