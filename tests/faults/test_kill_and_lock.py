"""SIGKILL at random points and mid-save, and two runs on one workdir.

The random-point kill is marked slow: in the default run the same trainer
path is killed between checkpoints by tests/foundation/test_resume_and_devices.
"""

import glob
import json
import os
import random
import signal

import pytest

from tests.faults import harness


@pytest.mark.slow
def test_sigkill_at_a_random_step_resumes_bit_identically(reference, tmp_path):
  _, ref = reference
  wd = str(tmp_path / "run")
  at = random.Random(os.environ.get("FAULT_SEED", "14")).randint(3, 8)
  p = harness.start_train(wd)
  harness.wait_for(lambda: harness.logged_step(wd) >= at, p)
  harness.kill(p)
  assert harness.committed(wd)[-1] < harness.STEPS
  harness.ok(harness.train(wd))
  # Steps replayed after the resume replace their rows: one row per step.
  harness.assert_same_losses(wd, ref)


def test_sigkill_during_an_async_save_resumes_bit_identically(reference,
                                                              tmp_path):
  _, ref = reference
  wd = str(tmp_path / "run")
  ck = os.path.join(wd, "checkpoints")
  # A save in flight is a step directory still carrying Orbax's tmp suffix.
  p = harness.start_train(wd)
  harness.wait_for(lambda: harness.logged_step(wd) >= 4 and
                   bool(glob.glob(os.path.join(ck, "*tmp*"))), p)
  harness.kill(p)
  harness.ok(harness.train(wd))
  assert not glob.glob(os.path.join(ck, "*tmp*"))  # cleared on resume
  harness.assert_same_losses(wd, ref)


def test_a_second_run_on_a_workdir_refuses_and_the_first_finishes(tmp_path):
  wd = str(tmp_path / "run")
  lock = os.path.join(wd, "lock")

  def held():
    try:
      with open(lock) as f:
        return bool(f.read().strip())
    except OSError:
      return False

  first = harness.start_train(wd)
  harness.wait_for(held, first)
  first.send_signal(signal.SIGSTOP)  # hold it inside its run, lock taken
  try:
    second = harness.train(wd, timeout=300)
  finally:
    first.send_signal(signal.SIGCONT)
  holder = json.load(open(lock))
  line = harness.one_error_line(second, 1, "is in use by",
                                f"pid {first.pid}", holder["host"])
  assert "another --workdir" in line
  out, err = first.communicate(timeout=600)
  assert first.returncode == 0, err[-3000:]
  assert sorted(harness.losses(wd)) == list(range(1, harness.STEPS + 1))
  assert harness.committed(wd)[-1] == harness.STEPS
  # ... and resumes normally later.
  harness.ok(harness.train(wd, "train.steps=12"))
  assert sorted(harness.losses(wd)) == list(range(1, 13))
