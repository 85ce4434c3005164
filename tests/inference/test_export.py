"""Export round trip: trained params come back (in bf16) and run."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.store.export import ExportError, export, load_export
from csm_jax.training.run import make_task
from csm_jax.training.trainer import Trainer
from tests.foundation.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_export_round_trip(tmp_path):
  c = tiny_config(train__steps=3, train__ckpt_every=3)
  wd = str(tmp_path / "run")
  tr = Trainer(c, wd, make_task(c))
  tr.run()
  trained = jax.device_get(tr.state["params"]["model"])
  out = str(tmp_path / "export")
  r = subprocess.run([sys.executable, "-m", "csm_jax.export",
                      f"--workdir={wd}", f"--out={out}"], cwd=ROOT,
                     capture_output=True, text=True, timeout=300,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "exported step 3" in r.stdout
  ex = load_export(out)
  got = ex.params["model"]
  for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(got)):
    assert b.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(a.astype(jnp.bfloat16)),
                                  np.asarray(b))
  model = load_export(out, dtype="float32").model()
  n = c.model.n_codebooks
  h, logits = model(jnp.zeros((1, 4, n), jnp.int32), jnp.ones((1, 4), jnp.int32),
                    jnp.ones((1, 4, n + 1), bool),
                    jnp.arange(4)[None], jnp.ones((1, 4), jnp.int32))
  assert np.isfinite(np.asarray(logits)).all()
  with pytest.raises(ExportError, match="exists"):
    export(wd, out)


def test_export_of_an_empty_workdir_names_the_problem(tmp_path):
  with pytest.raises(ExportError, match="run_config.json"):
    export(str(tmp_path), str(tmp_path / "out"))
