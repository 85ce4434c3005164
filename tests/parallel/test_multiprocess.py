"""Two local JAX processes train one model together and resume together."""

import json
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _launch(workdir, steps):
  port = _free_port()
  procs = []
  for i in range(2):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
               JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "tests.foundation.run_tiny", "--multiprocess",
         workdir, str(steps)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True))
  results = []
  for p in procs:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out[-3000:]
    line = [l for l in out.splitlines() if l.startswith("RESULT ")][-1]
    results.append(json.loads(line[len("RESULT "):]))
  return results


def test_two_processes_share_one_run_and_resume(tmp_path):
  wd = str(tmp_path)
  first = _launch(wd, 4)
  assert {r["process"] for r in first} == {0, 1}
  assert all(r["processes"] == 2 and r["devices"] == 2 for r in first)
  assert first[0]["loss"] == first[1]["loss"]
  ckpt = os.path.join(wd, "checkpoints", "4")
  assert os.path.isdir(ckpt)
  data = os.listdir(os.path.join(ckpt, "data"))
  assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(data)
  again = _launch(wd, 6)
  assert all(r["step"] == 6 for r in again)
