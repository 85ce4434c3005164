"""Inference exports: write one from a training run, read one back.

An export directory holds ``params/`` (Orbax, the model's parameter groups
only, bf16 by default; ``extra/`` too when the model has non-parameter
variables), ``config.json`` (the run's full config), ``export.json``
(source, step, dtype, task) and, when the run has them, ``tokenizer.model``
and ``codec/`` (a copy of the codec directory the run's data was tokenized
with). Parameters are read from the run with ``restore_params`` (no
optimizer state, cast once on read) and written as they came.
"""

from __future__ import annotations

import json
import os
import shutil

import jax
import orbax.checkpoint as ocp

from csm_jax.config import prosody as prosody_config
from csm_jax.config.errors import UserError
from csm_jax.data import prosody_cache
from csm_jax.store import layout
from csm_jax.store.adapters import has_adapters, merge_lora
from csm_jax.store.restore import Restored, restore_params
from csm_jax.store.run_config import load_run_config, update_export_info


class ExportError(UserError, RuntimeError):
  """The workdir or export directory is missing something; names it."""


def export(workdir: str, out: str, dtype: str = "bfloat16",
           step: int | None = None, keep_adapters: bool = False) -> dict:
  """Writes an inference export of ``workdir``'s latest (or given) step.

  A LoRA run's adapters are merged into the weights (``store.adapters``),
  unless ``keep_adapters``: the export then holds the adapters as its
  parameters and the frozen weights beside them, and is merged on load.
  """
  workdir = layout.absolute(workdir)
  if not layout.is_workdir(workdir):
    raise ExportError(f"{os.path.join(workdir, layout.RUN_CONFIG)} is "
                      "missing: not a csm_jax training workdir")
  out = layout.absolute(out)
  if os.path.exists(os.path.join(out, layout.EXPORT_PARAMS)):
    raise ExportError(f"{out}/{layout.EXPORT_PARAMS} exists; choose a new "
                      "--out")
  if has_adapters(load_run_config(workdir)) and not keep_adapters:
    # Merged in float32, then stored in ``dtype``.
    r = merge_lora(restore_params(workdir, dtype="float32", step=step))
    r.params = jax.tree.map(lambda a: a.astype(dtype), r.params)
  else:
    r = restore_params(workdir, dtype=dtype, step=step)
  write_export(r, out, dtype, source=workdir)
  copied = []
  tok = layout.tokenizer_path(workdir)
  if tok is not None:
    shutil.copy(tok, os.path.join(out, os.path.basename(tok)))
    copied.append(os.path.basename(tok))
  codec_dir = layout.run_codec_dir(r.config, workdir)
  if codec_dir and os.path.isdir(codec_dir):
    shutil.copytree(codec_dir, os.path.join(out, layout.EXPORT_CODEC))
    copied.append(layout.EXPORT_CODEC)
    if prosody_config.enabled(r.config.model):
      # The prosody stream's speaker statistics travel with the model.
      stats = prosody_cache.stats_path(r.config, codec_dir)
      if os.path.exists(stats):
        shutil.copy(stats, os.path.join(out, prosody_cache.EXPORT_STATS))
        copied.append(prosody_cache.EXPORT_STATS)
  info = update_export_info(out, files=copied)
  return info


def write_export(r: Restored, out: str, dtype: str, source: str) -> dict:
  """Writes ``r``'s parameters, config and export.json into ``out``."""
  os.makedirs(out, exist_ok=True)
  with ocp.StandardCheckpointer() as saver:
    saver.save(os.path.join(out, layout.EXPORT_PARAMS), r.params)
    if jax.tree.leaves(r.extra):
      saver.save(os.path.join(out, layout.EXPORT_EXTRA), r.extra)
  config = r.config.copy_and_resolve_references()
  if config.task == "csm":
    config.model.param_dtype = dtype
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = 1, 1, 1
  with open(os.path.join(out, layout.EXPORT_CONFIG), "w") as f:
    f.write(config.to_json(indent=2, sort_keys=True))
  info = {"source": source, "step": None if r.step is None else int(r.step),
          "dtype": dtype, "task": config.task, "files": []}
  with open(os.path.join(out, layout.EXPORT_INFO), "w") as f:
    json.dump(info, f, indent=2)
  return info


def load_export(directory: str, dtype: str | None = None) -> Restored:
  """An export's config and weights; ``dtype`` recasts floating weights."""
  directory = layout.absolute(directory)
  if not layout.is_export(directory):
    raise ExportError(f"{os.path.join(directory, layout.EXPORT_INFO)} is "
                      "missing: not a csm_jax export")
  return restore_params(directory, dtype=dtype)
