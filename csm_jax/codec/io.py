"""Saving and loading a trained codec as a self-describing directory.

A codec directory holds ``config.json`` (the codec ConfigDict) and
``weights.npz`` (every variable of the Codec: params and codebook state,
keyed by its path). ``codec_from_train_state`` pulls the codec out of the
shared trainer's state dict (``params`` per group + ``extra``).
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from csm_jax.codec import config as cfg
from csm_jax.codec.model import Codec, CodecGAN


def _key(path) -> str:
  return jax.tree_util.keystr(path)


def save_codec(directory: str, codec: Codec, c) -> None:
  """Writes config.json and weights.npz into ``directory``."""
  os.makedirs(directory, exist_ok=True)
  flat = {_key(p): np.asarray(v) for p, v in
          jax.tree_util.tree_leaves_with_path(nnx.state(codec))}
  with open(os.path.join(directory, "config.json"), "w") as f:
    f.write(c.to_json(indent=2))
  np.savez(os.path.join(directory, "weights.npz"), **flat)


def load_codec(directory: str) -> tuple[Codec, ml_collections.ConfigDict]:
  """Reads a directory written by ``save_codec``; checks every array's shape."""
  with open(os.path.join(directory, "config.json")) as f:
    raw = json.load(f)
  c = ml_collections.ConfigDict(_tuples(raw))
  cfg.validate(c)
  abstract = nnx.eval_shape(lambda: Codec(c, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  with np.load(os.path.join(directory, "weights.npz")) as data:
    stored = dict(data)

  def fill(path, leaf):
    k = _key(path)
    if k not in stored:
      raise ValueError(f"{directory}: weights.npz lacks {k}")
    if stored[k].shape != leaf.shape:
      raise ValueError(f"{directory}: {k} has shape {stored[k].shape}, the "
                       f"config expects {leaf.shape}")
    return jax.numpy.asarray(stored[k], leaf.dtype)

  state = jax.tree_util.tree_map_with_path(fill, state)
  return nnx.merge(graphdef, state), c


def _tuples(x):
  """JSON lists back to tuples, as the size table writes them."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def codec_from_train_state(task, train_state) -> Codec:
  """The Codec inside a CodecTask train state (``params``/``extra`` dicts)."""
  groups = task.param_groups()
  abstract = nnx.eval_shape(lambda: CodecGAN(task.c, rngs=nnx.Rngs(0)))
  graphdef = nnx.split(abstract, *groups.values(), ...)[0]
  parts = [train_state["params"][g] for g in groups]
  return nnx.merge(graphdef, *parts, train_state["extra"]).codec
