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

  codec = None
  tokenizer = None
  codec_dir = None
  _sources: dict | None = None

  def prepare(self, workdir):
    """Corpus, codec and tokenizer for dialogue data (built when missing)."""
    if self.config.data.source != "dialogues":
      return
    # pylint: disable=g-import-not-at-top
    from csm_jax.data.corpus import ensure_corpus
    from csm_jax.inference.codec_handle import CodecHandle
    from csm_jax.training import prerequisites as pre
    ensure_corpus(self.config)
    self.codec_dir = pre.ensure_codec(self.config, workdir)
    self.codec = CodecHandle.load(self.codec_dir)
    m = self.config.model
    if self.codec.levels < m.n_codebooks or \
        self.codec.codebook_size != m.codebook_size:
      raise ValueError(
          f"config.model: the codec in {self.codec_dir} has "
          f"{self.codec.levels} levels x {self.codec.codebook_size} codes; "
          f"the model predicts {m.n_codebooks} x {m.codebook_size}")
    self.tokenizer = pre.ensure_tokenizer(self.config, workdir)

  def codec_export_dir(self, workdir: str | None = None):
    """The codec this run's data was tokenized with (None for token data)."""
    if self.config.data.source != "dialogues":
      return None
    import os  # pylint: disable=g-import-not-at-top
    return self.codec_dir or self.config.data.codec_dir or (
        os.path.join(workdir, "codec", "export") if workdir else None)

  def build_model(self, rngs: nnx.Rngs) -> nnx.Module:
    return CSM(self.config.model, rngs)

  def loss_fn(self, model, batch, rng, step):
    del step
    m = self.config.model
    total, metrics = csm_loss(model, batch, rng, m.decoder_frame_fraction,
                              m.text_loss_weight,
                              critical_codebooks=m.critical_codebooks,
                              detail_per_step=m.detail_codebooks_per_step)
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
    if self.codec is None:
      raise RuntimeError("CSMTask.prepare(workdir) must run before reading "
                         "dialogue data (it sets up codec and tokenizer)")
    from csm_jax.training.prerequisites import dialogue_source  # pylint: disable=g-import-not-at-top
    self._sources = self._sources or {}
    if split not in self._sources:  # tokenizing and indexing happen once
      self._sources[split] = dialogue_source(
          self.config, "train" if split == "train" else "validation",
          self.codec, self.tokenizer, seed=d.seed)
    return self._sources[split]

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
