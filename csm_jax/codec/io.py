"""Saving and loading a trained codec as a self-describing directory.

A codec directory holds ``config.json`` (the codec ConfigDict) and
``weights.npz`` (every variable of the Codec: params and codebook state,
keyed by its path). ``codec_from_train_state`` pulls the codec out of the
shared trainer's state dict (``params`` per group + ``extra``).
``load_any`` opens whichever of the three places a codec lives in: such a
directory, a codec trainer workdir (latest checkpoint) or a CSM workdir
(its ``codec/export``).
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


class CodecNotFoundError(ValueError):
  """A path that holds no codec in any of the forms ``load_any`` reads."""


def _is_codec_dir(d: str) -> bool:
  return all(os.path.exists(os.path.join(d, f))
             for f in ("config.json", "weights.npz"))


def load_any(path: str) -> tuple[Codec, ml_collections.ConfigDict]:
  """The codec in ``path``: a ``save_codec`` directory, a codec trainer
  workdir (run_config.json + checkpoints/, latest step restored) or a CSM
  workdir (its ``codec/export``, as ``ensure_codec`` writes it)."""
  if not os.path.isdir(path):
    raise CodecNotFoundError(f"{path}: no such codec directory")
  if _is_codec_dir(path):
    return load_codec(path)
  export = os.path.join(path, "codec", "export")
  if _is_codec_dir(export):
    return load_codec(export)
  if os.path.exists(os.path.join(path, "run_config.json")):
    return _load_workdir(path)
  raise CodecNotFoundError(
      f"{path}: holds no codec (expected config.json + weights.npz, a codec "
      "training workdir with run_config.json + checkpoints/, or a CSM "
      "workdir with codec/export)")


def _load_workdir(workdir: str):
  """Restores the latest checkpoint of a codec run the way
  ``csm_jax.inference.export`` does and takes the generator's codec."""
  # The trainer stack is heavy and imports this package; load it on demand.
  from csm_jax.codec.task import CodecTask  # pylint: disable=g-import-not-at-top
  from csm_jax.inference.export import load_config_json  # pylint: disable=g-import-not-at-top
  from csm_jax.training import checkpoint as ckpt  # pylint: disable=g-import-not-at-top
  from csm_jax.training.state import StateBuilder  # pylint: disable=g-import-not-at-top
  config = load_config_json(os.path.join(workdir, "run_config.json"))
  if config.get("task") != "codec":
    raise CodecNotFoundError(
        f"{workdir}: a {config.get('task')!r} run without codec/export; "
        "pass a codec training workdir or a saved codec directory")
  config.codec = ml_collections.ConfigDict(_tuples(config.codec.to_dict()))
  # No clip source: restoring needs the state layout only, not the corpus.
  task = CodecTask(config)
  # Everything on one device: a codec for encode/decode needs no mesh.
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=one),
      StateBuilder.create(task, config).build_abstract())
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise CodecNotFoundError(f"{workdir}: has no checkpoints/ directory")
  manager = ckpt.make_manager(workdir, keep=1000, async_save=False)
  try:
    step = manager.latest_step()
    if step is None:
      raise CodecNotFoundError(
          f"{workdir}/checkpoints holds no committed checkpoint")
    state = ckpt.restore(manager, step, target, iterator=None)
  except ckpt.CheckpointError as e:
    # Callers handle one error type for "no usable codec here".
    raise CodecNotFoundError(str(e)) from e
  finally:
    manager.close()
  return codec_from_train_state(task, state), task.c
