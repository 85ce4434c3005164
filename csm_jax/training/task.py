"""The contract between the one trainer and the things it trains.

A task supplies the model, its loss and metrics, the batch layout and the data;
the trainer (``csm_jax.training.trainer``) owns the loop, the optimizer, the
sharding, checkpoints and logging. The CSM, the codec and later probes are all
tasks; none of them has a training loop of its own.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping

import jax
import numpy as np
from flax import nnx

Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]


class BatchError(ValueError):
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


class Task(abc.ABC):
  """What the trainer needs to know about one kind of model.

  Parameters are split into *groups*, each with its own optimizer and its own
  scalar loss (a GAN codec has ``generator`` and ``discriminator``; the CSM has
  one group, ``model``). Every group's gradient is taken of its own loss only,
  with respect to its own parameters. Non-parameter variables (EMA codebooks,
  counters) may be mutated by ``loss_fn`` and are carried in the train state.
  """

  def __init__(self, config):
    self.config = config

  # -- model -----------------------------------------------------------------
  @abc.abstractmethod
  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    """Constructs the model; called under ``jax.eval_shape`` and ``jit``."""

  def param_groups(self) -> dict[str, Any]:
    """Group name -> nnx filter selecting that group's trainable params."""
    return {"model": nnx.Param}

  def group_learning_rate_scale(self, group: str) -> float:
    del group
    return 1.0

  # -- loss ------------------------------------------------------------------
  @abc.abstractmethod
  def loss_fn(self, model: nnx.Module, batch: Batch, rng: jax.Array,
              step: jax.Array) -> tuple[dict[str, jax.Array], Metrics]:
    """Returns ({group: scalar loss}, metrics). Pure apart from ``model``'s
    non-Param variables, which the trainer reads back afterwards."""

  def eval_fn(self, model: nnx.Module, batch: Batch,
              rng: jax.Array) -> Metrics:
    """Metrics on a held-out batch; defaults to the training losses."""
    losses, metrics = self.loss_fn(model, batch, rng, jax.numpy.asarray(0))
    return {**metrics, **{f"loss/{k}": v for k, v in losses.items()}}

  # -- data ------------------------------------------------------------------
  @abc.abstractmethod
  def batch_spec(self) -> dict[str, FieldSpec]:
    """Per-example layout of a batch (see FieldSpec)."""

  @abc.abstractmethod
  def train_dataset(self, batch_size: int, seed: int) -> Any:
    """A grain IterDataset (checkpointable iterator) of host-local batches."""

  @abc.abstractmethod
  def eval_dataset(self, batch_size: int) -> Any:
    """A finite, deterministic grain IterDataset of held-out batches."""

  # -- accounting ------------------------------------------------------------
  def flops_per_batch(self, batch_size: int) -> float:
    """Matmul FLOPs of one training step (forward + backward), for MFU."""
    del batch_size
    return 0.0

  def items_per_batch(self, batch_size: int) -> tuple[str, float]:
    """(unit name, count) of what one batch trains on, e.g. ('frames', B*T)."""
    return ("examples", float(batch_size))

  # -- hooks -----------------------------------------------------------------
  def on_eval(self, model: nnx.Module, step: int, writer: Any,
              workdir: str) -> None:
    """Optional extra evaluation output (audio samples, images)."""
    del model, step, writer, workdir

  def prepare(self, workdir: str) -> None:
    """Builds whatever the task needs before training (data, tokenizers)."""
    del workdir

