"""Inference checkpoints: export a training run, load it for generation.

An export directory holds ``params/`` (Orbax, the model's parameters only, in
bf16 by default), ``config.json`` (the run's full config), ``export.json``
(source step and dtype) and, when the run has them, ``tokenizer.model`` and
``codec/`` (a copy of the codec export the run's data was tokenized with).
``load_export`` rebuilds the model from the config and restores the weights
into it, cast to the compute precision asked for.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from csm_jax.inference.decode import cast_floating
from csm_jax.parallel.mesh import make_mesh
from csm_jax.training import checkpoint as ckpt
from csm_jax.training.state import StateBuilder, abstract_with_shardings
from csm_jax.training.tasks import make_task

RUN_CONFIG = "run_config.json"
TOKENIZER = "tokenizer.model"


class ExportError(RuntimeError):
  """The workdir or export directory is missing something; names it."""


def save_run_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, RUN_CONFIG), "w") as f:
      f.write(config.to_json(indent=2, sort_keys=True))


def load_config_json(path: str) -> ml_collections.ConfigDict:
  if not os.path.exists(path):
    raise ExportError(f"{path} is missing: not a csm_jax run or export")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def export(workdir: str, out: str, dtype: str = "bfloat16",
           step: int | None = None) -> dict:
  """Writes an inference checkpoint of ``workdir``'s latest (or given) step."""
  config = load_config_json(os.path.join(workdir, RUN_CONFIG))
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
  task = make_task(config)
  builder = StateBuilder.create(task, config)
  abstract = builder.build_abstract()
  mesh = make_mesh(config, jax.devices()[:1])
  target = abstract_with_shardings(abstract, builder.shardings(mesh))
  manager = ckpt.make_manager(workdir, keep=1000, async_save=False)
  step = manager.latest_step() if step is None else step
  if step is None:
    raise ExportError(f"{workdir}/checkpoints holds no committed checkpoint")
  state = ckpt.restore(manager, step, target, iterator=None)
  manager.close()
  params = cast_floating(state["params"], jnp.dtype(dtype))
  out = os.path.abspath(out)
  if os.path.exists(os.path.join(out, "params")):
    raise ExportError(f"{out}/params exists; choose a new --out")
  os.makedirs(out, exist_ok=True)
  with ocp.StandardCheckpointer() as saver:
    saver.save(os.path.join(out, "params"), params)
  config.model.param_dtype = dtype
  with open(os.path.join(out, "config.json"), "w") as f:
    f.write(config.to_json(indent=2, sort_keys=True))
  copied = []
  if os.path.exists(os.path.join(workdir, TOKENIZER)):
    shutil.copy(os.path.join(workdir, TOKENIZER), os.path.join(out, TOKENIZER))
    copied.append(TOKENIZER)
  codec_dir = getattr(task, "codec_export_dir", lambda _: None)(workdir)
  if codec_dir and os.path.isdir(codec_dir):
    shutil.copytree(codec_dir, os.path.join(out, "codec"))
    copied.append("codec")
  info = {"source": os.path.abspath(workdir), "step": int(step),
          "dtype": dtype, "task": config.task, "files": copied}
  with open(os.path.join(out, "export.json"), "w") as f:
    json.dump(info, f, indent=2)
  return info


@dataclasses.dataclass
class Export:
  config: Any
  graphdef: Any
  params: Any  # {group: nnx.State}
  info: dict
  directory: str

  def model(self) -> nnx.Module:
    return nnx.merge(self.graphdef, *self.params.values())


def load_export(directory: str, dtype: str | None = None) -> Export:
  """Loads an export; ``dtype`` (e.g. float32 on CPU) recasts the weights."""
  directory = ckpt.absolute_workdir(directory)  # Orbax wants absolute paths
  config = load_config_json(os.path.join(directory, "config.json"))
  info_path = os.path.join(directory, "export.json")
  info = json.load(open(info_path)) if os.path.exists(info_path) else {}
  task = make_task(config)
  builder = StateBuilder.create(task, config)
  abstract = builder.build_abstract()
  with ocp.StandardCheckpointer() as loader:
    try:
      params = loader.restore(os.path.join(directory, "params"),
                              abstract["params"])
    except Exception as e:  # pylint: disable=broad-except
      raise ExportError(f"{directory}/params could not be restored: "
                        f"{type(e).__name__}: {str(e)[:300]}") from e
  if dtype is not None:
    params = cast_floating(params, jnp.dtype(dtype))
  return Export(config, builder.graphdef, params, info, directory)
