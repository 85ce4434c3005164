"""librosa, imported with its numba kernels compiled under a machine-wide lock.

librosa compiles its numba kernels with ``cache=True``: the first process to
need a kernel writes it into the package's ``__pycache__`` and later
processes load it from there. Processes that do this at the same moment on a
fresh install (a worker pool, parallel tests, a corpus build beside a
training run) can load a half-written entry and die with a segmentation
fault. So every use of librosa in this project goes through ``librosa()``,
which imports it and runs each kernel family once while holding an exclusive
``flock``: one process compiles and writes, the others then load a finished
cache. Later calls in the process only return the module.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from typing import Callable

LOCK_PATH = os.path.join(tempfile.gettempdir(), "csm_jax-librosa-numba.lock")

_warmed: set[str] = set()
_thread_lock = threading.Lock()


@contextlib.contextmanager
def _machine_lock():
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:  # no flock (Windows): nothing to serialize against
    yield
    return
  with open(LOCK_PATH, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def librosa(name: str = "import", warm_up: Callable[[object], None] | None
            = None):
  """The librosa module, with ``warm_up(librosa)`` run once under the lock.

  ``name`` identifies the warm-up (one run per name per process); the plain
  import is itself a warm-up because librosa compiles its signature-typed
  kernels when their modules load.
  """
  if name in _warmed:  # "import" is always warmed first
    import librosa as lr  # pylint: disable=g-import-not-at-top
    return lr
  with _thread_lock, _machine_lock():
    import librosa as lr  # pylint: disable=g-import-not-at-top
    if "import" not in _warmed:
      # Touch the lazily loaded submodules whose kernels compile on import.
      _ = (lr.util.localmax, lr.sequence.viterbi, lr.filters.mel, lr.pyin,
           lr.yin)
      _warmed.add("import")
    if name not in _warmed:
      if warm_up is not None:
        warm_up(lr)
      _warmed.add(name)
  return lr
