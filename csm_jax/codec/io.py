"""Saving and loading a trained codec as a self-describing directory.

A codec directory holds ``config.json`` (the codec ConfigDict) and
``weights.npz`` (every variable of the Codec: params and codebook state,
keyed by its path). Opening a codec from a training run is
``csm_jax.store.codecs.load_any``'s job (it restores checkpoints).
"""

from __future__ import annotations

import json
import os
import zipfile

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


class CodecFileError(UserError, ValueError):
  """A codec directory whose config.json or weights.npz cannot be used."""


def load_codec(directory: str) -> tuple[Codec, ml_collections.ConfigDict]:
  """Reads a directory written by ``save_codec``; checks every array's shape.

  A file that cannot be read or does not match its config raises
  ``CodecFileError`` naming it.
  """
  config_path = os.path.join(directory, "config.json")
  weights_path = os.path.join(directory, "weights.npz")
  try:
    with open(config_path) as f:
      raw = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CodecFileError(f"{config_path} is not readable JSON: {e}") from e
  c = config_from_json_dict(raw)
  cfg.validate(c)
  abstract = nnx.eval_shape(lambda: Codec(c, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  try:
    with np.load(weights_path) as data:
      stored = dict(data)
  except (ValueError, EOFError, zipfile.BadZipFile) as e:
    raise CodecFileError(f"{weights_path} is not a codec's weights file "
                         f"({type(e).__name__}: {e})") from e

  def fill(path, leaf):
    k = _key(path)
    if k not in stored:
      raise CodecFileError(f"{weights_path} lacks {k}")
    if stored[k].shape != leaf.shape:
      raise CodecFileError(f"{weights_path}: {k} has shape "
                           f"{stored[k].shape}, {config_path} expects "
                           f"{leaf.shape}")
    return jax.numpy.asarray(stored[k], leaf.dtype)

  state = jax.tree_util.tree_map_with_path(fill, state)
  return nnx.merge(graphdef, state), c


class CodecNotFoundError(UserError, ValueError):
  """A path that holds no codec in any of the forms the loaders read."""


def is_codec_dir(d: str) -> bool:
  return all(os.path.exists(os.path.join(d, f))
             for f in ("config.json", "weights.npz"))
