"""The CSM as a trainer task: model, loss, metrics, batch layout and data."""

from __future__ import annotations

import jax
from flax import nnx

from csm_jax.data import loader
from csm_jax.data.synthetic_tokens import SyntheticTokenSource, csm_batch_spec
from csm_jax.model.csm import CSM
from csm_jax.model.loss import count_flops, csm_loss
from csm_jax.training.task import Task


class CSMTask(Task):
  """Trains the backbone + depth decoder on packed conversation frames."""

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return CSM(self.config.model, rngs)

  def loss_fn(self, model, batch, rng, step):
    del step
    m = self.config.model
    total, metrics = csm_loss(model, batch, rng, m.decoder_frame_fraction,
                              m.text_loss_weight)
    return {"model": total}, metrics

  def eval_fn(self, model, batch, rng):
    m = self.config.model
    # Held-out loss of every codebook on every frame: fraction 1.
    total, metrics = csm_loss(model, batch, rng, 1.0, m.text_loss_weight)
    return {"loss": total, **metrics}

  def batch_spec(self):
    return csm_batch_spec(self.config)

  def _source(self, split: str):
    d = self.config.data
    if d.source == "synthetic_tokens":
      n = d.num_examples if split == "train" else d.eval_examples
      # Disjoint seeds keep held-out examples out of the training stream.
      return SyntheticTokenSource(self.config, n, d.seed * 2 + (split != "train"))
    raise ValueError(
        f"config.data.source={d.source!r} needs the dialogue corpus; build it "
        "with `python -m csm_jax.prepare --dataset=synthetic_dialogues`")

  def train_dataset(self, batch_size, seed):
    d = self.config.data
    return loader.train_dataset(self._source("train"), batch_size, seed,
                                d.worker_threads, d.prefetch)

  def eval_dataset(self, batch_size):
    return loader.eval_dataset(self._source("eval"), batch_size)

  def flops_per_batch(self, batch_size):
    return count_flops(self.config, batch_size)

  def items_per_batch(self, batch_size):
    return ("frames", float(batch_size * self.config.data.seq_len))
