"""An advisory lock on a training workdir: one run writes it at a time.

``hold(workdir)`` takes an exclusive ``fcntl.flock`` on ``<workdir>/lock``
and writes the holder's pid, host and start time into it. A second run on
the same workdir fails at once with ``WorkdirLocked`` naming the holder
(two runs interleave metrics and delete each other's checkpoints). The
kernel drops the lock when its process dies, so a lock left by a killed run
is taken over, with a warning naming the dead holder. The file is emptied,
never removed, on release: removing it would let a waiting process lock the
old file while a third locks a new one.

A read-only workdir is refused before anything is written, by its mode
too (root writes through permission bits). Only process 0 of a multi-host
run takes the lock. URLs (gs://...) cannot be
locked and are not. A directory inside one this process already holds
(the codec a CSM run trains in ``<workdir>/codec``) runs under that lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys

import jax
from absl import logging

from csm_jax.store import layout
from csm_jax.store.run_config import WorkdirError


class WorkdirLocked(WorkdirError):
  """Another live process holds the workdir's lock; names it."""


_held: dict[str, list] = {}  # path -> [fd, depth]


def _holder(fd: int) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
    return json.loads(raw) if raw else {}
  except (OSError, ValueError):
    return {}


def _describe(h: dict) -> str:
  if not h:
    return "another process"
  return (f"pid {h.get('pid', '?')} on host {h.get('host', '?')} (since "
          f"{h.get('since', '?')}: {h.get('command', '?')})")


def _covering(path: str) -> str | None:
  for held in _held:
    if path == held or path.startswith(held.rstrip(os.sep) + os.sep):
      return held
  return None


def _nearest_existing(path: str) -> str:
  while not os.path.exists(path) and os.path.dirname(path) != path:
    path = os.path.dirname(path)
  return path


def _check_writable(workdir: str) -> None:
  """Refuses a workdir that is read-only before anything is written.

  Root writes through permission bits, so a directory whose mode has no
  write bit (``chmod a-w``) is refused by its mode: its owner marked it
  read-only. For a new workdir, the directory it would be made in counts.
  """
  where = _nearest_existing(workdir)
  try:
    st, vfs = os.stat(where), os.statvfs(where)
  except OSError:
    return  # makedirs/open below say what is wrong
  if vfs.f_flag & os.ST_RDONLY:
    why = "is on a read-only file system"
  elif not st.st_mode & 0o222:
    why = f"is not writable: read-only mode {st.st_mode & 0o777:04o}"
  elif not os.access(where, os.W_OK):
    why = "is not writable (permission denied)"
  else:
    return
  raise WorkdirError(f"workdir {workdir} {why} ({where})")


def _open(workdir: str) -> int:
  _check_writable(workdir)
  try:
    os.makedirs(workdir, exist_ok=True)
    return os.open(os.path.join(workdir, layout.LOCK),
                   os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    why = {errno.EROFS: "is on a read-only file system",
           errno.EACCES: "is not writable (permission denied)",
           errno.ENOSPC: "is on a full disk",
           errno.ENOTDIR: "is not a directory"}.get(
               e.errno, f"cannot be written ({e.strerror or e})")
    raise WorkdirError(f"workdir {workdir} {why} ({e.filename or workdir})"
                       ) from e


def _acquire(workdir: str) -> int | None:
  """The locked file's descriptor, or None where the file system has no
  locks (then the run goes on unlocked, with a warning)."""
  fd = _open(workdir)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _holder(fd)
    os.close(fd)
    raise WorkdirLocked(
        f"workdir {workdir} is in use by {_describe(holder)}; wait for that "
        "run to finish or stop it, or use another --workdir "
        f"({os.path.join(workdir, layout.LOCK)})") from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      os.close(fd)
      raise
    os.close(fd)
    logging.warning("workdir %s: this file system has no file locks (%s); "
                    "make sure no other run uses it", workdir, e.strerror)
    return None
  stale = _holder(fd)
  if stale and stale.get("pid") != os.getpid():
    logging.warning("workdir %s: taking over the lock of %s, which is no "
                    "longer running", workdir, _describe(stale))
  me = {"pid": os.getpid(), "host": socket.gethostname(),
        "since": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:300]}
  try:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(me) + "\n").encode())
  except OSError:
    pass  # the lock is held; its description is a courtesy
  return fd


def _release(fd: int | None) -> None:
  if fd is None:
    return
  try:
    os.ftruncate(fd, 0)
  except OSError:
    pass
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextlib.contextmanager
def hold(workdir: str):
  """Holds ``workdir``'s lock for the block (see the module docstring)."""
  path = layout.absolute(workdir)
  if "://" in path or jax.process_index() != 0:
    yield
    return
  covering = _covering(path)
  if covering is not None:
    _held[covering][1] += 1
    try:
      yield
    finally:
      _held[covering][1] -= 1
    return
  _held[path] = [_acquire(path), 1]
  try:
    yield
  finally:
    fd, _ = _held.pop(path)
    _release(fd)
