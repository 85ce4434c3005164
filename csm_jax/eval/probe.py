"""The next-word probe of Experiment 1: codec tokens in, a common word out.

A deliberately small model (summed codebook embeddings, two 1-D
convolutions, masked mean and max pooling, a linear classifier) trained on
the shared trainer as a task: if it predicts the next word far above the
baselines, the tokens carry what was said, not only how. With
``feature_dim`` it reads float features per frame instead (the frozen CSM
backbone's states), through a linear map in place of the embedding, and
is otherwise the same probe.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from csm_jax.data.batch import FieldSpec
from csm_jax.data.examples.loader import read_options
from csm_jax.training.tasks.base import Task


class NextWordProbe(nnx.Module):
  """(B, W, C) codec tokens, or (B, W, feature_dim) features, + (B, W)
  validity -> (B, classes) logits."""

  def __init__(self, n_codebooks: int, codebook_size: int, n_classes: int,
               window: int, width: int, rngs: nnx.Rngs,
               feature_dim: int = 0):
    self.codebook_size = codebook_size
    self.feature_dim = feature_dim
    if feature_dim:
      self.embed = nnx.Linear(feature_dim, width, rngs=rngs)
    else:
      self.embed = nnx.Embed(n_codebooks * codebook_size, width, rngs=rngs)
    self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(),
                                                  (window, width)))
    self.conv1 = nnx.Conv(width, width, (5,), padding="SAME", rngs=rngs)
    self.conv2 = nnx.Conv(width, width, (5,), padding="SAME", rngs=rngs)
    self.norm = nnx.LayerNorm(2 * width, rngs=rngs)
    self.out = nnx.Linear(2 * width, n_classes, rngs=rngs)

  def __call__(self, inputs, valid):
    if self.feature_dim:
      x = self.embed(inputs.astype(jnp.float32))
    else:
      ids = inputs + jnp.arange(inputs.shape[-1]) * self.codebook_size
      x = self.embed(ids).sum(axis=2)
    x = x + self.pos[...][None]
    m = valid[..., None].astype(x.dtype)
    x = x * m
    x = x + jax.nn.gelu(self.conv1(x)) * m
    x = x + jax.nn.gelu(self.conv2(x)) * m
    mean = x.sum(1) / jnp.maximum(m.sum(1), 1.0)
    mx = jnp.where(m > 0, x, -1e9).max(1)
    return self.out(self.norm(jnp.concatenate([mean, mx], -1)))


class ArraySource:
  """Random-access examples over stacked arrays (a grain source)."""

  def __init__(self, arrays: dict):
    self.arrays = arrays
    self.n = len(next(iter(arrays.values())))

  def __len__(self) -> int:
    return self.n

  def __getitem__(self, i: int) -> dict:
    return {k: v[i] for k, v in self.arrays.items()}


def _stack(items):
  return {k: np.stack([it[k] for it in items]) for k in items[0]}


class ProbeTask(Task):
  """Trains ``NextWordProbe`` on (tokens, valid, label) examples, or on
  (features, valid, label) ones with ``feature_dim``."""

  def __init__(self, config, train: dict, heldout: dict, n_codebooks: int,
               codebook_size: int, n_classes: int, window: int,
               width: int = 128, feature_dim: int = 0):
    super().__init__(config)
    self.train, self.heldout = ArraySource(train), ArraySource(heldout)
    self.shape = (n_codebooks, codebook_size, n_classes, window, width)
    self.feature_dim = feature_dim
    self.inputs = "features" if feature_dim else "tokens"

  def build_model(self, rngs):
    c, v, k, w, width = self.shape
    return NextWordProbe(c, v, k, w, width, rngs,
                         feature_dim=self.feature_dim)

  def loss_fn(self, model, batch, rng, step):
    del rng, step
    logits = model(batch[self.inputs], batch["valid"])
    ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), batch["label"]).mean()
    acc = (jnp.argmax(logits, -1) == batch["label"]).mean()
    return {"model": ce}, {"loss/ce": ce, "acc/top1": acc}

  def batch_spec(self):
    c, v, k, w, _ = self.shape
    if self.feature_dim:
      inputs = FieldSpec((w, self.feature_dim), np.float32,
                         ("batch", None, None))
    else:
      inputs = FieldSpec((w, c), np.int32, ("batch", None, None), 0, v)
    return {self.inputs: inputs,
            "valid": FieldSpec((w,), np.bool_, ("batch", None)),
            "label": FieldSpec((), np.int32, ("batch",), 0, k)}

  def train_dataset(self, batch_size, seed):
    ds = grain.MapDataset.source(self.train)
    ds = ds[jax.process_index()::jax.process_count()]
    ds = ds.shuffle(seed=seed).repeat(None)
    return ds.batch(batch_size, drop_remainder=True,
                    batch_fn=_stack).to_iter_dataset(read_options(self.config))

  def eval_dataset(self, batch_size):
    ds = grain.MapDataset.source(self.heldout)
    return ds.batch(batch_size, drop_remainder=True,
                    batch_fn=_stack).to_iter_dataset(
                        read_options(evaluation=True))


def map_batches(fn, arrays: tuple, batch: int) -> np.ndarray:
  """``fn(*chunk)`` over ``batch``-row chunks of ``arrays`` (the last one
  zero-padded, so a jitted ``fn`` compiles one shape), concatenated with
  the padding rows dropped."""
  out = []
  for i in range(0, len(arrays[0]), batch):
    chunk = [a[i:i + batch] for a in arrays]
    n = len(chunk[0])
    if n < batch:
      chunk = [np.concatenate([a, np.zeros((batch - n,) + a.shape[1:],
                                           a.dtype)]) for a in chunk]
    out.append(np.asarray(fn(*chunk))[:n])
  return np.concatenate(out) if out else np.zeros((0,), np.int64)


def log_probs(model, tokens: np.ndarray, valid: np.ndarray,
              batch: int = 256) -> np.ndarray:
  """(N, classes) log-probabilities of every example (``tokens``: the
  probe's inputs, codec tokens or features)."""
  graphdef, state = nnx.split(model)

  @jax.jit
  def f(state, t, v):
    return jax.nn.log_softmax(
        nnx.merge(graphdef, state)(t, v).astype(jnp.float32), -1)

  return map_batches(lambda t, v: f(state, t, v), (tokens, valid), batch)


def predict(model, tokens: np.ndarray, valid: np.ndarray,
            batch: int = 256) -> np.ndarray:
  """Top-1 class of every example."""
  return np.argmax(log_probs(model, tokens, valid, batch), -1)
