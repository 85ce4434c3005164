"""The batch contract: what every field of a batch is, and the check of it.

A task describes its batches with ``FieldSpec``s (per-example shape, dtype,
logical sharding axes, id range); the trainer checks every host batch with
``validate_batch`` before it reaches a device, so a bad id or shape fails on
the host with the field's name. ``csm_batch_spec`` is the CSM's layout,
shared by every CSM data source.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from csm_jax.config import prosody as prosody_config
from csm_jax.config import text_stream
from csm_jax.config.errors import UserError

Batch = Mapping[str, Any]


class BatchError(UserError, ValueError):
  """A batch does not match its task's spec (wrong shape, dtype, id range)."""


@dataclasses.dataclass(frozen=True)
class FieldSpec:
  """One array of a batch: per-example shape, dtype, logical axes, value range.

  ``shape`` excludes the leading batch axis; ``axes`` includes it (the first
  name is normally ``"batch"``). ``low``/``high`` bound integer ids (``high``
  exclusive) so an out-of-range id fails on the host with the field's name
  rather than silently reading a wrong embedding row on device.
  """

  shape: tuple[int, ...]
  dtype: Any
  axes: tuple[str | None, ...]
  low: int | None = None
  high: int | None = None


def validate_batch(batch: Batch, spec: Mapping[str, FieldSpec],
                   batch_size: int) -> None:
  """Raises BatchError naming the first field that violates ``spec``."""
  missing = set(spec) - set(batch)
  if missing:
    raise BatchError(f"batch is missing fields {sorted(missing)}")
  for name, fs in spec.items():
    arr = np.asarray(batch[name])
    want = (batch_size, *fs.shape)
    if arr.shape != want:
      raise BatchError(f"batch field '{name}' has shape {arr.shape}, "
                       f"expected {want}")
    if np.dtype(arr.dtype) != np.dtype(fs.dtype):
      raise BatchError(f"batch field '{name}' has dtype {arr.dtype}, "
                       f"expected {np.dtype(fs.dtype)}")
    if fs.low is not None and arr.size and arr.min() < fs.low:
      raise BatchError(f"batch field '{name}' holds id {arr.min()} below "
                       f"the allowed minimum {fs.low}")
    if fs.high is not None and arr.size and arr.max() >= fs.high:
      raise BatchError(f"batch field '{name}' holds id {arr.max()} but the "
                       f"vocabulary has only {fs.high} entries")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
      raise BatchError(f"batch field '{name}' holds NaN or Inf values")


def csm_batch_spec(config) -> dict[str, FieldSpec]:
  """The per-example layout of a CSM batch (shared by every CSM data source)."""
  m, t = config.model, config.data.seq_len
  n = m.n_codebooks
  spec = {
      "audio_tokens": FieldSpec((t, n), np.int32, ("batch", "seq", None),
                                0, m.audio_vocab),
      "text_tokens": FieldSpec((t,), np.int32, ("batch", "seq"),
                               0, m.text_vocab),
      "mask": FieldSpec((t, n + 1), np.bool_, ("batch", "seq", None)),
      "positions": FieldSpec((t,), np.int32, ("batch", "seq"),
                             0, m.max_seq_len),
      "segment_ids": FieldSpec((t,), np.int32, ("batch", "seq"), 0, None),
      "loss_mask": FieldSpec((t,), np.bool_, ("batch", "seq")),
  }
  if text_stream.aligned(m):
    # Does the next row move on to the next token (data.examples.frames)?
    spec["advance"] = FieldSpec((t,), np.int32, ("batch", "seq"), -1, 2)
    # The row's token and the lookahead tokens after it.
    spec["text_tokens"] = FieldSpec((t, 1 + text_stream.lookahead(m)),
                                    np.int32, ("batch", "seq", None), 0,
                                    m.text_vocab)
  if prosody_config.enabled(m):
    # The prosody column (data.examples.frames): F0 ids with the unvoiced
    # id f0_bins, energy ids, the turn's style with the unknown id last.
    p = m.prosody
    spec.update({
        "prosody_f0": FieldSpec((t,), np.int32, ("batch", "seq"),
                                0, p.f0_bins + 1),
        "prosody_energy": FieldSpec((t,), np.int32, ("batch", "seq"),
                                    0, p.energy_bins),
        "prosody_style": FieldSpec((t,), np.int32, ("batch", "seq"), 0,
                                   prosody_config.style_vocab(p) + 1),
        "prosody_mask": FieldSpec((t,), np.bool_, ("batch", "seq")),
    })
  return spec
