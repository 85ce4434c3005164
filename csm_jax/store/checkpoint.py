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
import re
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from csm_jax.store import layout


class CheckpointError(RuntimeError):
  """A checkpoint exists but cannot be restored; names its directory."""


class ProcessCountMismatch(CheckpointError):
  """The data-iterator state was written by another number of processes."""

  def __init__(self, directory, saved: int | None, current: int):
    saved_s = "another number of" if saved is None else str(saved)
    super().__init__(
        f"{directory}: the data-iterator state was written by {saved_s} "
        f"processes and this run has {current}. Resume with "
        f"{saved if saved else 'the same number of'} processes for an exact "
        "resume, or set --config.train.elastic_resume=true to restore the "
        "model and optimizer exactly and restart the data order (seeded by "
        "the step)")
    self.saved, self.current = saved, current


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
      counts = {int(m.group(1)) for m in (
          re.fullmatch(r"process_\d+-of-(\d+)\.json", p.name)
          for p in directory.iterdir()) if m}
      raise ProcessCountMismatch(directory,
                                 counts.pop() if len(counts) == 1 else None,
                                 jax.process_count())
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


def make_manager(workdir: str, keep: int, async_save: bool = True):
  directory = epath.Path(layout.absolute(workdir)) / layout.CHECKPOINTS
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


def restore(manager, step: int, abstract_state, iterator,
            elastic: bool = False):
  """Restores state (laid out as ``abstract_state``) and the iterator.

  Returns (state, whether the iterator state was restored). A checkpoint of
  another process count raises ``ProcessCountMismatch``, unless ``elastic``:
  then the state alone is restored and the caller restarts its data.
  """
  path = os.path.join(str(manager.directory), str(step))
  try:
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=DataStateRestore()))
  except ProcessCountMismatch as e:
    if not elastic:
      raise
    logging.warning("%s; elastic_resume: restoring model and optimizer "
                    "only", e)
    out = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    logging.info("restored checkpoint %s (without data state)", path)
    return out.state, False
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
  return out.state, True
