"""The fault suite's shared run: an uninterrupted reference training run,
whose losses every fault's resume is compared with; and a compilation
cache its commands share."""

import json
import os

import pytest

from tests.faults import harness


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One JAX compilation cache for every command the suite runs: each is a
  new process that would compile the same tiny train step again (most of
  a run's time on a small CPU)."""
  keys = ("JAX_COMPILATION_CACHE_DIR",
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
  saved = {k: os.environ.get(k) for k in keys}
  if saved[keys[0]] is None:
    os.environ[keys[0]] = harness.once_per_session(
        tmp_path_factory, "jax_cache", os.makedirs)
    os.environ.setdefault(keys[1], "0.5")
  yield
  for k, v in saved.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
  """(workdir, step -> loss) of the tiny run, trained without a fault."""
  wd = harness.once_per_session(tmp_path_factory, "fault_reference",
                                _train_reference)
  got = harness.losses(wd)
  assert sorted(got) == list(range(1, harness.STEPS + 1))
  return wd, got


def _train_reference(wd):
  """Its workdir starts with the lock file of a process that is gone (a
  killed run's): the run takes the lock over and says so."""
  os.makedirs(wd)
  with open(os.path.join(wd, "lock"), "w") as f:
    json.dump({"pid": 999999, "host": "gone-host", "since": "earlier",
               "command": "python -m csm_jax.train (killed)"}, f)
  r = harness.train(wd)
  harness.ok(r)
  assert "taking over the lock of pid 999999 on host gone-host" in r.stderr
  with open(os.path.join(wd, "lock")) as f:
    assert f.read() == ""  # released: emptied, never removed
