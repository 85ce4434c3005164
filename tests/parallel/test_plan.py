"""Ahead-of-time plans compile the real train step for topologies we lack."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from csm_jax.parallel import topology

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
HAS_LIBTPU = importlib.util.find_spec("libtpu") is not None
needs_libtpu = pytest.mark.skipif(
    not HAS_LIBTPU, reason="libtpu is not installed: pip install -e '.[tpu]' "
    "enables ahead-of-time TPU plans")


def _plan(config, topo, tmp_path, *extra):
  """Runs the plan CLI; topo None uses the config's default topology."""
  out = tmp_path / "plan.json"
  topo_flag = [f"--topology={topo}"] if topo else []
  r = subprocess.run(
      [sys.executable, "-m", "csm_jax.plan", f"--config={config}",
       *topo_flag, f"--json={out}", *extra],
      cwd=ROOT, capture_output=True, text=True, timeout=1800,
      env=dict(os.environ, PYTHONPATH=ROOT))
  report = json.loads(out.read_text()) if out.exists() else None
  return r, report


@needs_libtpu
def test_debug_plan_compiles_for_a_small_tpu_slice(tmp_path):
  r, rep = _plan("configs/debug.py", "v5e-4", tmp_path)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "FITS" in r.stdout and "per-chip memory" in r.stdout
  assert rep["chips"] == 4 and rep["mesh"]["data"] == 4
  pc = rep["per_chip"]
  assert 0 < pc["parameters"] < pc["arguments_total"] <= pc["total"]
  assert pc["hbm"] == 16 * 2**30
  assert rep["flops_per_step_counted"] > 0 and rep["implied_mfu"] > 0
  assert any("backbone.layers.attn.wq" in n for n, _ in rep["sharding"])


@needs_libtpu
def test_plan_that_does_not_fit_fails_clearly(tmp_path):
  r, _ = _plan("configs/debug.py", "v5e-4", tmp_path,
               "--config.data.batch_size=4096", "--config.data.seq_len=512")
  assert r.returncode != 0
  assert "DOES NOT FIT" in r.stdout and "does not fit" in r.stderr


@needs_libtpu
@pytest.mark.slow
@pytest.mark.parametrize("config,topo", [
    ("configs/medium.py", "v5p-64"), ("configs/tiny.py", None),
    ("configs/small.py", None), ("configs/csm_1b.py", None)])
def test_scale_configs_fit_their_default_topology(config, topo, tmp_path):
  r, rep = _plan(config, topo, tmp_path)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  assert rep["fits"]


def test_unknown_topology_names_the_known_ones():
  with pytest.raises(topology.TopologyError, match="v5p-64"):
    topology.resolve("v9-1")
  assert topology.slice_name_for("v5p:2x4x4") == "v5p-64"
