"""One Orbax CheckpointManager for the train state and the data iterator.

A checkpoint holds the train state (params, optimizer state, step, RNG, extra
variables) and every process's grain iterator state, saved together and
asynchronously; the last N are kept. Orbax writes into a temporary directory
and renames it when the save is committed, so a run killed mid-save resumes
from the previous committed step. The iterator state is captured at save
time (not later in the background thread), which keeps resumes exact.

Failures are loud and lose nothing committed: ``Saver`` checks free space
before each save and turns a save that failed in the background into a
``SaveFailed`` at the next step (Orbax only logs it, and deletes old steps
only after a commit, so the previous checkpoint stays). ``restore_latest``
falls back to an older committed step when the newest cannot be restored,
and sets the bad one aside in ``<workdir>/corrupt_checkpoints``.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import shutil
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from csm_jax.config.errors import UserError, cause_chain
from csm_jax.store import layout


class CheckpointError(UserError, RuntimeError):
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


def make_manager(workdir: str, keep: int, async_save: bool = True,
                 writer: bool = False):
  """The workdir's manager. ``writer``: the (locked) run that trains in it,
  which also clears temporary directories of saves that never committed
  (a reader must not: they may be a running trainer's save in flight)."""
  directory = epath.Path(layout.absolute(workdir)) / layout.CHECKPOINTS
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True,
      enable_async_checkpointing=async_save,
      cleanup_tmp_directories=writer)
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
        f"checkpoint {path} could not be restored ({reason(e)}); it is "
        "corrupt or incomplete, or from another model") from e
  if iterator is not None and out.data:
    iterator.set_state(out.data)
  logging.info("restored checkpoint %s", path)
  return out.state, True


def _first_line(e: BaseException, limit: int = 300) -> str:
  text = " ".join(str(e).split())
  return text if len(text) <= limit else text[:limit - 3] + "..."


def reason(e: BaseException, limit: int = 300) -> str:
  """``Type: message`` of the error a failed read or write comes down to.

  Orbax wraps TensorStore's error in a bare ``Exception`` whose text is the
  whole TensorStore spec ("See full TensorStore details: ..."); the error
  it was raised from names the file and what is wrong with it.
  """
  inner = e
  while inner.__cause__ is not None and str(inner.__cause__).strip():
    inner = inner.__cause__
  text = str(inner).split("See full TensorStore details")[0]
  text = text.split(" [source locations=")[0].strip().rstrip(".")
  return f"{type(inner).__name__}: {_first_line(text or inner, limit)}"


# -- failing loudly ------------------------------------------------------------


class SaveFailed(CheckpointError):
  """A save did not commit (disk full, permissions, ...); names the step."""


# Room kept beyond the state's bytes: Orbax metadata and per-array files.
SPACE_MARGIN = 1.05
SPACE_SLACK = 2**20


def state_bytes(state) -> int:
  """Bytes of every array of ``state`` (what a checkpoint of it holds)."""
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)
                 if hasattr(x, "dtype")))


def _no_space(e: BaseException) -> bool:
  for err in cause_chain(e, implicit=True):
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    # Tensorstore reports a full disk in its own error's text.
    if "no space left on device" in str(err).lower():
      return True
  return False


class Saver:
  """Saves through ``manager``; a save that fails stops the run with a line.

  ``save`` checks free space first (where the file system reports it) and
  raises the previous save's background failure, if any; ``check`` (every
  step) raises it as soon as the save has ended, without waiting; ``finish``
  waits for the save in flight. Each raises ``SaveFailed`` naming the step,
  the reason and the last committed checkpoint.
  """

  def __init__(self, manager, poll: bool = True):
    self.manager = manager
    self.poll = poll  # multi-host runs check at saves only (all at once)
    self.pending: int | None = None
    self.directory = str(manager.directory)

  def _failed(self, step, e: BaseException) -> SaveFailed:
    why = ("no space left on device" if _no_space(e)
           else reason(e, 200))
    committed = [int(s) for s in committed_steps(self.directory)
                 if s != step]
    last = (f"the last committed checkpoint is step {max(committed)}, run "
            "again to resume from it" if committed
            else "no checkpoint is committed yet")
    return SaveFailed(f"saving checkpoint {step} failed: {why} "
                      f"({self.directory}); {last}")

  def check_space(self, step: int, nbytes: int) -> None:
    if "://" in self.directory:
      return
    try:
      free = shutil.disk_usage(self.directory).free
    except OSError:
      return  # the file system does not say; the save itself will tell
    need = int(nbytes * SPACE_MARGIN) + SPACE_SLACK
    if free < need:
      raise SaveFailed(
          f"not enough space to save checkpoint {step}: it needs about "
          f"{need / 2**20:.1f} MiB and {free / 2**20:.1f} MiB are free "
          f"({self.directory}); free some space and run again to resume "
          "from the last committed checkpoint")

  def save(self, step: int, state, iterator, force: bool = False) -> None:
    # Orbax waits for the previous save before starting one; waiting here
    # costs nothing more and names the step that failed.
    self.finish()
    self.check_space(step, state_bytes(state))
    try:
      save(self.manager, step, state, iterator, force=force)
    except Exception as e:  # pylint: disable=broad-except
      raise self._failed(step, e) from e
    self.pending = step

  def check(self) -> None:
    """Raises the failure of a save that has ended; never blocks."""
    if (self.poll and self.pending is not None and
        not self.manager.is_saving_in_progress()):
      self.finish()

  def finish(self) -> None:
    """Waits for the save in flight; raises ``SaveFailed`` if it failed."""
    if self.pending is None:
      return
    step, self.pending = self.pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      raise self._failed(step, e) from e

  def close(self) -> None:
    """Waits and closes; an error here was reported already (or will be)."""
    try:
      self.manager.close()
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("closing the checkpoint manager: %s", _first_line(e))


def committed_steps(directory: str) -> list[int]:
  try:
    names = os.listdir(directory)
  except OSError:
    return []
  return sorted(int(n) for n in names if n.isdigit())


# -- falling back --------------------------------------------------------------


def set_aside(workdir: str, step: int) -> str:
  """Moves checkpoint ``step`` out of the manager's directory; returns where."""
  src = os.path.join(layout.absolute(workdir), layout.CHECKPOINTS, str(step))
  root = os.path.join(layout.absolute(workdir), layout.CORRUPT_CHECKPOINTS)
  os.makedirs(root, exist_ok=True)
  dst, n = os.path.join(root, str(step)), 1
  while os.path.exists(dst):
    dst, n = os.path.join(root, f"{step}.{n}"), n + 1
  os.replace(src, dst)
  return dst


def restore_latest(manager, workdir: str, abstract_state, iterator,
                   elastic: bool = False):
  """Restores the newest checkpoint that can be; None when there is none.

  Returns (state, data restored, step). When the newest cannot be restored
  but an older committed one can, the newer ones are moved to
  ``<workdir>/corrupt_checkpoints/`` with a warning naming each, and the
  run resumes from the older. When none can, the newest's error is raised
  and nothing is moved (all failing points at the model, not the files).
  ``ProcessCountMismatch`` is never a fallback: it is the user's choice.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  if not steps:
    return None
  failures = []
  for step in steps:
    try:
      state, data_restored = restore(manager, step, abstract_state, iterator,
                                     elastic=elastic)
    except ProcessCountMismatch:
      raise
    except CheckpointError as e:
      failures.append((step, e))
      logging.warning("%s", e)
      continue
    if failures:
      if jax.process_index() == 0:
        for bad, e in failures:
          where = set_aside(workdir, bad)
          logging.warning("checkpoint %d cannot be restored; moved it to %s "
                          "and resumed from step %d", bad, where, step)
      _sync("csm_jax:set_aside")
      manager.reload()
    return state, data_restored, step
  raise failures[0][1]


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices(name)
