"""The CSM as a trainer task: model, loss, metrics, batch layout and data."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from csm_jax.config import memory as memory_config
from csm_jax.data.batch import csm_batch_spec
from csm_jax.data.examples import loader
from csm_jax.data.examples.dialogue import dialogue_source
from csm_jax.data.examples.memory_dialogue import memory_dialogue_source
from csm_jax.data.examples.memory_rows import memory_batch_spec
from csm_jax.data.examples.memory_synthetic import SyntheticMemorySource
from csm_jax.data.examples.synthetic_tokens import SyntheticTokenSource
from csm_jax.model.loss import count_flops, csm_loss, target_weights
from csm_jax.model.memory_loss import memory_csm_loss, memory_flops
from csm_jax.store import models
from csm_jax.training.tasks.base import Task


def _prosody_weights(m) -> tuple[float, float]:
  p = m.get("prosody")
  return (1.0, 0.2) if p is None else (p.loss_weight, p.style_loss_weight)


class CSMTask(Task):
  """Trains the backbone + depth decoder on packed conversation frames.

  Dialogue data needs the ``codec`` its turns are tokenized with and the
  text ``tokenizer``; ``csm_jax.training.run.make_task`` builds both. A task
  without them still serves everything but data (plans, benchmarks).
  """

  def __init__(self, config, codec=None, tokenizer=None):
    super().__init__(config)
    self.codec, self.tokenizer = codec, tokenizer
    self._sources: dict = {}

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return models.build_model(self.config, rngs)

  def param_groups(self):
    return models.param_groups(self.config.task, self.config)

  def loss_fn(self, model, batch, rng, step):
    del step
    m = self.config.model
    total, metrics = self._loss(model, batch, rng, m.decoder_frame_fraction,
                                critical_codebooks=m.critical_codebooks,
                                detail_per_step=m.detail_codebooks_per_step,
                                level_dropout=m.get("level_dropout", 0.0),
                                prosody_weights=_prosody_weights(m))
    return {"model": total}, metrics

  def _loss(self, model, batch, rng, decoder_fraction, **kwargs):
    # With the dual memory, the memory of the earlier turns is the
    # example's prefix and the conversational terms are added.
    m = self.config.model
    kwargs["advance_weight"] = m.get("advance_loss_weight", 1.0)
    if memory_config.enabled(m):
      return memory_csm_loss(model, batch, rng, decoder_fraction,
                             m.text_loss_weight, m.memory, **kwargs)
    return csm_loss(model, batch, rng, decoder_fraction, m.text_loss_weight,
                    **kwargs)

  def batch_weight(self, batch):
    # The loss is a mean over target frames: weigh micro-batches by theirs.
    audio_w, _ = target_weights(batch)
    return jnp.sum(audio_w)

  def eval_fn(self, model, batch, rng):
    m = self.config.model
    # Held-out loss of every codebook on every frame: fraction 1.
    total, metrics = self._loss(model, batch, rng, 1.0,
                                prosody_weights=_prosody_weights(m))
    return {"loss": total, **metrics}

  def batch_spec(self):
    spec = csm_batch_spec(self.config)
    if memory_config.enabled(self.config.model):
      spec.update(memory_batch_spec(self.config))
    return spec

  def _source(self, split: str):
    d = self.config.data
    if d.source == "synthetic_tokens":
      n = d.num_examples if split == "train" else d.eval_examples
      # Disjoint seeds keep held-out examples out of the training stream.
      seed = d.seed * 2 + (split != "train")
      if memory_config.enabled(self.config.model):
        return SyntheticMemorySource(self.config, n, seed)
      return SyntheticTokenSource(self.config, n, seed)
    if self.codec is None or self.tokenizer is None:
      raise RuntimeError(
          "CSMTask reads dialogue data only with a codec and a tokenizer; "
          "build the task with csm_jax.training.run.make_task(config, "
          "workdir), which prepares corpus, codec and tokenizer")
    if split not in self._sources:  # tokenizing and indexing happen once
      make = (memory_dialogue_source if memory_config.enabled(self.config.model)
              else dialogue_source)
      self._sources[split] = make(
          self.config, "train" if split == "train" else "validation",
          self.codec, self.tokenizer)
    return self._sources[split]

  def train_dataset(self, batch_size, seed):
    source = self._source("train")
    d = self.config.data
    first = None
    if d.get("curriculum_steps", 0) and d.source == "dialogues":
      # Short turns first (data.curriculum_steps); a resumed run's iterator
      # restores its place in the same stream.
      frames = int(d.curriculum_max_seconds * self.codec.frame_rate)
      first = (source.shorter(frames), d.curriculum_steps)
    return loader.train_dataset(source, batch_size, seed, self.config,
                                first=first)

  def eval_dataset(self, batch_size):
    return loader.eval_dataset(self._source("eval"), batch_size)

  def flops_per_batch(self, batch_size):
    flops = count_flops(self.config, batch_size)
    if memory_config.enabled(self.config.model):
      flops += memory_flops(self.config, batch_size)
    return flops

  def items_per_batch(self, batch_size):
    return ("frames", float(batch_size * self.config.data.seq_len))
