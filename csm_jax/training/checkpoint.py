"""One Orbax CheckpointManager for the train state and the data iterator.

A checkpoint holds the train state (params, optimizer state, step, RNG, extra
variables) and every process's grain iterator state, saved together and
asynchronously; the last N are kept. Orbax writes into a temporary directory
and renames it when the save is committed, so a run killed mid-save resumes
from the previous committed step. The iterator state is captured at save
time (not later in the background thread), which keeps resumes exact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored; names its directory."""


class WorkdirError(RuntimeError):
  """The workdir holds a run this config cannot continue."""


# -- per-process data iterator state -----------------------------------------


class DataStateHandler(ocp.CheckpointHandler):
  """Writes one JSON file per process with that process's iterator state."""

  def _file(self, directory: epath.Path) -> epath.Path:
    return directory / (f"process_{jax.process_index()}-of-"
                        f"{jax.process_count()}.json")

  def save(self, directory: epath.Path, args: "DataStateSave"):
    self._file(directory).write_text(json.dumps(args.state))

  def restore(self, directory: epath.Path, args: "DataStateRestore" = None):
    path = self._file(directory)
    if not path.exists():
      raise CheckpointError(
          f"{path} is missing: the checkpoint was written by a different "
          "number of processes; data-iterator state cannot be mapped")
    return json.loads(path.read_text())

  def metadata(self, directory):
    del directory
    return None

  def structure(self, directory):
    del directory
    return None

  def finalize(self, directory):
    del directory


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# -- manager -------------------------------------------------------------------


def absolute_workdir(workdir: str) -> str:
  """``workdir`` as an absolute path; URLs (gs://...) are left as they are.

  Orbax refuses relative checkpoint paths, and a relative path would also
  change meaning if the process changed directory.
  """
  return workdir if "://" in workdir else os.path.abspath(workdir)


def make_manager(workdir: str, keep: int, async_save: bool = True):
  directory = epath.Path(absolute_workdir(workdir)) / "checkpoints"
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(directory, options=options,
                               item_names=("state", "data"))


def save(manager, step: int, state, iterator, force: bool = False) -> bool:
  data_state = iterator.get_state() if iterator is not None else {}
  return manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(state),
      data=DataStateSave(data_state)), force=force)


def restore(manager, step: int, abstract_state, iterator):
  """Restores state (laid out as ``abstract_state``) and the iterator."""
  path = os.path.join(str(manager.directory), str(step))
  try:
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=DataStateRestore()))
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise CheckpointError(
        f"checkpoint {path} could not be restored ({type(e).__name__}: "
        f"{str(e)[:300]}). It is corrupt or incomplete, or from another "
        "model; move it away to resume from the previous checkpoint.") from e
  if iterator is not None and out.data:
    iterator.set_state(out.data)
  logging.info("restored checkpoint %s", path)
  return out.state


# -- workdir config -------------------------------------------------------------


def check_workdir_config(workdir: str, structural: dict) -> None:
  """Records the run's structural config, or refuses an incompatible one."""
  path = epath.Path(workdir) / "config.json"
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise WorkdirError(f"{path} is not valid JSON: {e}") from e
    want = json.loads(json.dumps(structural))
    # Only what this version counts as structural is compared: fields an
    # older version recorded beyond that do not make its runs incompatible.
    diffs = _diff(saved, want)
    if diffs:
      raise WorkdirError(
          f"workdir {workdir} holds a run of an incompatible config "
          f"(differs in {', '.join(diffs[:8])}); use a new --workdir or the "
          "run's own config")
    return
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(structural, indent=2, sort_keys=True))


def _diff(saved, want, prefix="") -> list[str]:
  """Fields of ``want`` that ``saved`` lacks or holds with another value."""
  if isinstance(saved, dict) and isinstance(want, dict):
    out = []
    for k in sorted(want):
      out += _diff(saved.get(k), want[k], f"{prefix}{k}.")
    return out
  return [] if saved == want else [f"{prefix[:-1]} ({saved!r} vs {want!r})"]
