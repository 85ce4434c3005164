"""Running the command lines as a user does, and what every fault must show.

``cli(module, *args)`` runs ``python -m <module> ARGS`` in a subprocess;
``one_error_line(r, code, *words)`` asserts the contract of a failure: the
exit code, no ``Traceback`` anywhere, and exactly one ``error:`` line on
stderr, which is its last line and holds each of ``words``. Runs the suite
shares are built once per session (``once_per_session``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CONFIG = "tests/faults/tiny_run.py"
STEPS = 10  # tiny_run.py's train.steps


def env(**extra) -> dict:
  e = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
  e.pop("CSM_JAX_DEBUG", None)
  e.update(extra)
  return e


def cli(module: str, *args: str, timeout: float = 600, extra_env=None,
        cwd: str = ROOT) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd,
                        env=env(**(extra_env or {})), capture_output=True,
                        text=True, timeout=timeout)


def train(workdir: str, *overrides: str, **kw) -> subprocess.CompletedProcess:
  config = CONFIG + (":" + ",".join(overrides) if overrides else "")
  return cli("csm_jax.train", f"--config={config}", f"--workdir={workdir}",
             **kw)


def start_train(workdir: str, *overrides: str, module: str = "csm_jax.train",
                extra_env=None) -> subprocess.Popen:
  config = CONFIG + (":" + ",".join(overrides) if overrides else "")
  return subprocess.Popen(
      [sys.executable, "-m", module, f"--config={config}",
       f"--workdir={workdir}"], cwd=ROOT, env=env(**(extra_env or {})),
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ok(r) -> None:
  assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
  assert "Traceback" not in r.stderr, r.stderr[-4000:]


def one_error_line(r, code: int, *words: str) -> str:
  """Asserts the one-line failure contract; returns the error line."""
  err = r.stderr
  assert r.returncode == code, (r.returncode, err[-4000:])
  assert "Traceback" not in err, err[-4000:]
  errors = [l for l in err.splitlines() if l.startswith("error:")]
  assert len(errors) == 1, err[-4000:]
  last = [l for l in err.splitlines() if l.strip()][-1]
  assert last == errors[0], err[-4000:]
  for w in words:
    assert w in last, (w, last)
  return last


# -- reading a workdir --------------------------------------------------------


def metric_rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


def losses(workdir: str) -> dict[int, float]:
  """Step -> loss, asserting one training row per step (no replays)."""
  rows = [r for r in metric_rows(workdir) if "loss" in r]
  steps = [r["step"] for r in rows]
  assert len(steps) == len(set(steps)), f"duplicate rows: {steps}"
  return {r["step"]: r["loss"] for r in rows}


def committed(workdir: str) -> list[int]:
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def logged_step(workdir: str) -> int:
  try:
    rows = metric_rows(workdir)
  except (OSError, ValueError):
    return 0
  return max((r["step"] for r in rows if "loss" in r), default=0)


def wait_for(predicate, proc: subprocess.Popen | None = None,
             timeout: float = 600, poll: float = 0.005) -> None:
  t0 = time.time()
  while time.time() - t0 < timeout:
    if predicate():
      return
    if proc is not None and proc.poll() is not None:
      raise AssertionError("the run ended before the awaited moment: "
                           + proc.stderr.read()[-3000:])
    time.sleep(poll)
  raise AssertionError("timed out")


def kill(proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
  proc.send_signal(sig)
  proc.wait(timeout=120)


def once_per_session(tmp_path_factory, name: str, build) -> str:
  """``build(dir)`` run once per test session, even with pytest-xdist
  workers (they share the parent of their temp roots and wait for each
  other here); returns the directory. Tests copy it before changing it."""
  root = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    root = root.parent  # this session's directory, above the workers'
  shared = root / name
  shared.mkdir(exist_ok=True)
  with open(shared / ".building", "w") as guard:
    fcntl.flock(guard, fcntl.LOCK_EX)
    if not (shared / ".done").exists():
      build(str(shared / "run"))
      (shared / ".done").write_text("")
  return str(shared / "run")


def assert_same_losses(workdir: str, reference_losses: dict) -> None:
  """Every step's loss equals the reference's, bit for bit."""
  got = losses(workdir)
  assert sorted(got) == sorted(reference_losses)
  for s, v in reference_losses.items():
    assert got[s] == v, f"step {s}: {got[s]} != {v}"


def copy_run(src: str, dst: str) -> str:
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lock"))
  return dst
