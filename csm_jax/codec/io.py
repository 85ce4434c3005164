"""Saving and loading a trained codec as a self-describing directory.

A codec directory holds ``config.json`` (the codec ConfigDict) and
``weights.npz`` (every variable of the Codec: params and codebook state,
keyed by its path). Opening a codec from a training run is
``csm_jax.store.codecs.load_any``'s job (it restores checkpoints).
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from csm_jax.config import codec as cfg
from csm_jax.config.errors import UserError
from csm_jax.config.serialize import config_from_json_dict
from csm_jax.codec.model import Codec


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
  c = config_from_json_dict(raw)
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


class CodecNotFoundError(UserError, ValueError):
  """A path that holds no codec in any of the forms the loaders read."""


def is_codec_dir(d: str) -> bool:
  return all(os.path.exists(os.path.join(d, f))
             for f in ("config.json", "weights.npz"))
