"""librosa's numba kernels are first compiled while holding the machine lock."""

import fcntl

import pytest

from csm_jax.audio import librosa_safe


def _lock_is_held() -> bool:
  with open(librosa_safe.LOCK_PATH, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _acquire_and_release() -> bool:
  # Blocking: another process may hold the lock for its own warm-up; a lock
  # leaked by this process would hang here (and hit the test timeout).
  with open(librosa_safe.LOCK_PATH, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    fcntl.flock(f, fcntl.LOCK_UN)
  return True


def test_warm_up_runs_once_under_the_lock():
  seen = []

  def warm(lr):
    seen.append((lr.__name__, _lock_is_held()))

  a = librosa_safe.librosa("test-warm", warm)
  b = librosa_safe.librosa("test-warm", warm)
  assert a is b and a.__name__ == "librosa"
  assert seen == [("librosa", True)]
  assert _acquire_and_release()


def test_warm_up_error_releases_the_lock_and_retries():
  def boom(lr):
    raise RuntimeError("kernel failed")

  with pytest.raises(RuntimeError, match="kernel failed"):
    librosa_safe.librosa("test-boom", boom)
  assert _acquire_and_release()
  assert librosa_safe.librosa("test-boom", lambda lr: None).__name__ == "librosa"
