"""Subprocess entry for kill/resume and multi-device tests.

``python -m tests.foundation.run_tiny WORKDIR STEPS [CKPT_EVERY]`` trains the
tiny config; ``--compare-devices`` prints losses on 1 and on 8 devices.
"""

import json
import sys

import jax

from csm_jax.parallel.mesh import initialize_distributed
from csm_jax.training.run import make_task, train_and_evaluate
from csm_jax.training.trainer import Trainer
from tests.foundation.tiny import tiny_config


def _compare_devices(workdir, steps):
  out = {}
  for name, devs, mesh in (("one", jax.devices()[:1], (1, 1, 1)),
                           ("eight", jax.devices(), (2, 2, 2))):
    c = tiny_config(train__steps=steps, train__ckpt_every=1000,
                    train__eval_every=1000, data__batch_size=8)
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
    tr = Trainer(c, f"{workdir}/{name}", make_task(c), devices=devs)
    tr.run()
    rows = [json.loads(l) for l in open(f"{workdir}/{name}/metrics.jsonl")]
    out[name] = [r["loss"] for r in rows if "loss" in r]
    leaf = jax.tree.leaves(tr.state["params"])[0]
    out[name + "_devices"] = len(leaf.sharding.device_set)
  print("RESULT " + json.dumps(out))


def _multiprocess(workdir, steps):
  """One of N processes (JAX_* env vars); data axis spans all processes."""
  initialize_distributed()
  c = tiny_config(train__steps=steps, train__ckpt_every=2,
                  train__eval_every=1000)
  c.mesh.data = -1
  out = train_and_evaluate(c, workdir)
  print("RESULT " + json.dumps({"process": jax.process_index(),
                                "processes": jax.process_count(),
                                "devices": jax.device_count(),
                                "loss": out["loss"], "step": out["step"]}))


def main():
  if sys.argv[1] == "--multiprocess":
    _multiprocess(sys.argv[2], int(sys.argv[3]))
    return
  if sys.argv[1] == "--compare-devices":
    _compare_devices(sys.argv[2], int(sys.argv[3]))
    return
  workdir, steps = sys.argv[1], int(sys.argv[2])
  every = int(sys.argv[3]) if len(sys.argv) > 3 else 2
  c = tiny_config(train__steps=steps, train__ckpt_every=every,
                  train__eval_every=1000, train__keep_checkpoints=2)
  train_and_evaluate(c, workdir)
  # Only a run that finished gets here (SIGTERM ends the process).
  print("AFTER TRAINING", flush=True)


if __name__ == "__main__":
  main()
