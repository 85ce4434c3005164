"""Results computed once per distinct clip: keyed by the clip's samples.

An evaluation or a conversation meets the same audio many times (a
prompt's context turn once per scored row, a conversation's history every
turn); what is derived from it deterministically (its F0 track, its codes)
is kept here, the oldest dropped past ``size``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable

import numpy as np


def _copy(value):
  """A copy the caller may change without changing the kept result."""
  if isinstance(value, tuple):
    return tuple(_copy(v) for v in value)
  return value.copy() if isinstance(value, np.ndarray) else value


class ClipMemo:
  """``get(clip, compute, *key)``: ``compute()`` for the first clip with
  these samples (and ``key``), a copy of the kept result after that."""

  def __init__(self, size: int):
    self.size = int(size)
    self._kept: dict = {}

  def get(self, clip: np.ndarray, compute: Callable[[], Any], *key) -> Any:
    a = np.ascontiguousarray(clip)
    k = (hashlib.blake2b(a.tobytes(), digest_size=16).digest(),
         a.dtype.str, *key)
    if k not in self._kept:
      if len(self._kept) >= self.size:
        self._kept.pop(next(iter(self._kept)))
      self._kept[k] = compute()
    return _copy(self._kept[k])
