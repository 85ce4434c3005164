"""Inference exports: write one from a training run, read one back.

An export directory holds ``params/`` (Orbax, the model's parameter groups
only, bf16 by default; ``extra/`` too when the model has non-parameter
variables), ``config.json`` (the run's full config), ``export.json``
(source, step, dtype, task) and, when the run has them, ``tokenizer.model``
and ``codec/`` (a copy of the codec directory the run's data was tokenized
with). Parameters are read from the run with ``restore_params`` (no
optimizer state, cast once on read) and written as they came.

A parameter tree may also hold ``Deferred`` leaves (a converter's, which
makes each parameter from a source checkpoint): those are made and written
one at a time, each dropped once it is on disk, so the save holds one
parameter, not the tree. The checkpoint is the same plain Orbax PyTree
either way (``jax.Array`` leaves), read back by ``restore_params``.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import shutil
from typing import Callable, Sequence

import jax
import numpy as np
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


class Deferred:
  """A parameter made only when the save reaches it: ``make()`` returns it
  as a ``jax.Array`` of ``shape`` and ``dtype``."""

  def __init__(self, shape, dtype, make: Callable[[], jax.Array]):
    self.shape = tuple(shape)
    self.dtype = np.dtype(dtype)
    self._make = make

  @property
  def nbytes(self) -> int:
    # Orbax sizes its save by the leaves' nbytes.
    return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

  def make(self) -> jax.Array:
    return self._make()


@functools.cache
def _malloc_trim():
  try:
    return ctypes.CDLL(None).malloc_trim
  except (AttributeError, OSError):  # not glibc
    return None


def _trim_heap() -> None:
  """Hands the heap's free pages back to the kernel (glibc).

  TensorStore encodes each array in its worker threads, whose malloc arenas
  keep what they freed: without this, the process grows by about a large
  parameter for every one written, as if they were all still held.
  """
  trim = _malloc_trim()
  if trim is not None:
    trim(0)


class _OneAtATime(ocp.type_handlers.TypeHandler):
  """Saves ``Deferred`` leaves through the ``jax.Array`` handler, one leaf
  at a time: made, written and committed before the next is made.

  Everything but ``serialize`` is the array handler's, so the files, the
  metadata and the type recorded (``jax.Array``) are those of an ordinary
  array save, and the checkpoint reads back without this class.
  """

  def __init__(self, arrays: ocp.type_handlers.TypeHandler):
    self._arrays = arrays

  def typestr(self) -> str:
    return self._arrays.typestr()

  async def metadata(self, infos):
    return await self._arrays.metadata(infos)

  async def serialize(self, values: Sequence[Deferred], infos,
                      args=None) -> list:
    args = args or [ocp.SaveArgs()] * len(values)
    for value, info, arg in zip(values, infos, args):
      array = value.make()
      # The array handler writes in background threads; waiting for them
      # here (off the event loop) keeps one parameter in memory at a time.
      for f in await self._arrays.serialize([array], [info], [arg]):
        await asyncio.to_thread(f.result)
      del array
      _trim_heap()
    return []

  async def deserialize(self, infos, args=None):
    return await self._arrays.deserialize(infos, args)

  def finalize(self, directory) -> None:
    self._arrays.finalize(directory)


def _save_tree(path: str, tree) -> None:
  """One Orbax PyTree checkpoint of ``tree`` at ``path``."""
  if not any(isinstance(leaf, Deferred) for leaf in jax.tree.leaves(tree)):
    with ocp.StandardCheckpointer() as saver:
      saver.save(path, tree)
    return
  arrays = ocp.type_handlers.get_type_handler(jax.Array)
  registry = ocp.type_handlers.create_type_handler_registry(
      (Deferred, _OneAtATime(arrays)), (jax.Array, arrays))
  with ocp.Checkpointer(ocp.PyTreeCheckpointHandler(
      type_handler_registry=registry)) as saver:
    saver.save(path, args=ocp.args.PyTreeSave(tree))


def write_export(r: Restored, out: str, dtype: str, source: str) -> dict:
  """Writes ``r``'s parameters, config and export.json into ``out``.

  ``r.params`` may hold ``Deferred`` leaves: they are made here, one at a
  time (an error making one leaves an unfinished ``params`` behind).
  """
  os.makedirs(out, exist_ok=True)
  _save_tree(os.path.join(out, layout.EXPORT_PARAMS), r.params)
  if jax.tree.leaves(r.extra):
    _save_tree(os.path.join(out, layout.EXPORT_EXTRA), r.extra)
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
