"""Training with the memory: a short run learns and logs every term; a
non-finite memory is skipped by the trainer; 8 devices equal 1."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.training.run import train_and_evaluate
from csm_jax.training.tasks.csm import CSMTask
from csm_jax.training.trainer import Trainer
from tests.devices import xla_flags
from tests.foundation.tiny import read_losses
from tests.memory.helpers import memory_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_a_short_run_with_memory_trains_and_logs_every_term(tmp_path):
  c = memory_config(weights=0.2)
  c.train.steps, c.train.ckpt_every, c.train.eval_every = 30, 1000, 30
  wd = str(tmp_path / "run")
  out = train_and_evaluate(c, wd)
  losses = read_losses(wd)
  assert out["step"] == 30 and len(losses) == 30
  assert np.mean([losses[s] for s in range(26, 31)]) < \
      np.mean([losses[s] for s in range(1, 6)]) - 0.5
  rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  last = [r for r in rows if "loss" in r][-1]
  for key in ("loss/semantic", "loss/dynamics", "loss/character",
              "acc/character", "memory/turns", "memory/prosodic_norm"):
    assert key in last and np.isfinite(last[key]), key
  assert last["nonfinite/skipped_total"] == 0
  assert "eval/loss/character" in out


def test_a_memory_gone_non_finite_is_skipped_by_the_guard(tmp_path):
  class PoisonedMemory(CSMTask):
    """The memory's read projection is NaN at step 1 only."""

    def loss_fn(self, model, batch, rng, step):
      bank = model.memory.prosodic
      bank.read_proj[...] = jnp.where(step == 1, jnp.nan, bank.read_proj[...])
      return super().loss_fn(model, batch, rng, step)

  c = memory_config()
  c.train.steps = 3
  tr = Trainer(c, str(tmp_path), PoisonedMemory(c))
  tr.compile()
  state = tr.builder.init(0, tr.mesh)
  it = iter(tr.task.train_dataset(4, 0))
  snap = lambda s: jax.tree.map(np.asarray, jax.device_get(s))
  state, m0 = tr.train_step(state, tr._put(next(it)))
  assert int(m0["nonfinite/this_step"]) == 0
  before = snap(state)
  state, m1 = tr.train_step(state, tr._put(next(it)))
  after = snap(state)
  assert not np.isfinite(float(m1["loss"]))
  assert int(m1["nonfinite/this_step"]) == 1 and int(after["skipped"]) == 1
  jax.tree.map(np.testing.assert_array_equal, before["params"],
               after["params"])
  jax.tree.map(np.testing.assert_array_equal, before["opt"], after["opt"])
  state, m2 = tr.train_step(state, tr._put(next(it)))
  assert int(m2["nonfinite/this_step"]) == 0
  assert np.isfinite(float(m2["loss"]))


# Slow (about a minute of 8-device compilation): the plain CSM's 1-vs-8
# device equivalence runs in the default suite on the same sharding code.
@pytest.mark.slow
def test_eight_devices_train_the_memory_as_one_does(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
             XLA_FLAGS=xla_flags(8))
  r = subprocess.run([sys.executable, "-m", "tests.memory.run_devices",
                      str(tmp_path), "3"], cwd=ROOT, capture_output=True,
                     text=True, timeout=900, env=env)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")][-1]
  res = json.loads(line[len("RESULT "):])
  assert res["one_devices"] == 1 and res["eight_devices"] > 1
  for key, values in res["one"].items():
    assert len(values) == 3, key
    np.testing.assert_allclose(values, res["eight"][key], rtol=5e-5,
                               atol=5e-5, err_msg=key)
