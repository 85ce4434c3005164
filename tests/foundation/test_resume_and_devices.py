"""SIGKILL at any moment resumes bit-identically; 1 vs 8 devices agree."""

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.devices import xla_flags
from tests.foundation.tiny import read_losses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
STEPS = 14


def _env(**extra):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT, **extra)
  return env


def _run(workdir, steps=STEPS, wait=True):
  cmd = [sys.executable, "-m", "tests.foundation.run_tiny", workdir, str(steps)]
  p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
  if wait:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
  return p


_losses = read_losses


def _logged_steps(workdir):
  try:
    return max(_losses(workdir), default=0)
  except (FileNotFoundError, json.JSONDecodeError):
    return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  wd = str(tmp_path_factory.mktemp("ref"))
  _run(wd)
  return _losses(wd)


def _kill_when(workdir, predicate, timeout=300):
  p = _run(workdir, wait=False)
  t0 = time.time()
  while time.time() - t0 < timeout:
    if predicate():
      p.send_signal(signal.SIGKILL)
      p.wait()
      return True
    if p.poll() is not None:
      return False
    time.sleep(0.005)
  p.kill()
  raise AssertionError("run never reached the kill point")


def test_kill_between_checkpoints_resumes_bit_identical(reference, tmp_path):
  wd = str(tmp_path)
  assert _kill_when(wd, lambda: _logged_steps(wd) >= 7)
  committed = sorted(int(d) for d in os.listdir(os.path.join(wd, "checkpoints"))
                     if d.isdigit())
  assert committed and committed[-1] < STEPS
  _run(wd)
  got = _losses(wd)
  assert set(got) == set(reference)
  for s in reference:
    assert got[s] == reference[s], f"step {s}: {got[s]} != {reference[s]}"


def test_kill_during_async_save_resumes_bit_identical(reference, tmp_path):
  wd = str(tmp_path)
  ck = os.path.join(wd, "checkpoints")
  # A save in flight is a step directory still carrying Orbax's tmp suffix.
  in_flight = lambda: bool(glob.glob(os.path.join(ck, "*tmp*"))) and \
      _logged_steps(wd) >= 4
  assert _kill_when(wd, in_flight)
  _run(wd)
  got = _losses(wd)
  for s in reference:
    assert got[s] == reference[s], f"step {s}: {got[s]} != {reference[s]}"


def test_sigterm_saves_and_ends_the_command_then_resumes(reference, tmp_path):
  """SIGTERM (a preemption): the step reached is saved and the process
  ends with 143, so nothing after the training (a results page's next
  section) runs on a model that stopped part way; resuming finishes it."""
  wd = str(tmp_path)
  p = _run(wd, wait=False)
  t0 = time.time()
  while _logged_steps(wd) < 4 and p.poll() is None:
    assert time.time() - t0 < 300, "run never reached step 4"
    time.sleep(0.005)
  p.send_signal(signal.SIGTERM)
  out, _ = p.communicate(timeout=300)
  assert p.returncode == 143, out[-3000:]
  assert "SIGTERM: saved step" in out and "AFTER TRAINING" not in out
  committed = sorted(int(d) for d in os.listdir(os.path.join(wd, "checkpoints"))
                     if d.isdigit())
  assert committed and 4 <= committed[-1] < STEPS
  _run(wd)
  got = _losses(wd)
  for s in reference:
    assert got[s] == reference[s], f"step {s}: {got[s]} != {reference[s]}"


def test_one_and_eight_devices_give_the_same_losses(tmp_path):
  r = subprocess.run(
      [sys.executable, "-m", "tests.foundation.run_tiny", "--compare-devices",
       str(tmp_path), "4"], cwd=ROOT, capture_output=True, text=True,
      timeout=600,
      env=_env(XLA_FLAGS=xla_flags(8)))
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
  res = json.loads(line[len("RESULT "):])
  assert res["one_devices"] == 1 and res["eight_devices"] > 1
  assert len(res["one"]) == len(res["eight"]) == 4
  np.testing.assert_allclose(res["one"], res["eight"], rtol=2e-5, atol=2e-5)
