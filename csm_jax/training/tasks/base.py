"""The contract between the one trainer and the things it trains.

A task supplies the model, its loss and metrics, the batch layout and the data;
the trainer (``csm_jax.training.trainer``) owns the loop, the optimizer, the
sharding, checkpoints and logging. The CSM, the codec and later probes are all
tasks; none of them has a training loop of its own. Whatever a task needs
before training (a corpus, a codec, a tokenizer) is built by the run step
(``csm_jax.training.run``) and handed to its constructor.
"""

from __future__ import annotations

import abc
from typing import Any

import jax
from flax import nnx

from csm_jax.data.batch import Batch, FieldSpec

Metrics = dict[str, jax.Array]


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

  def batch_weight(self, batch: Batch) -> jax.Array:
    """How much a (micro-)batch counts when gradients are accumulated.

    ``loss_fn`` returns a mean over what the batch trains on; accumulating
    micro-batches weights each mean by this, so the step's gradient is the
    mean over everything trained on, whatever its split. Default: equal.
    """
    del batch
    return jax.numpy.asarray(1.0, jax.numpy.float32)

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

