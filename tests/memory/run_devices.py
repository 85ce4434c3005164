"""Subprocess entry: the memory model trained on 1 and on 8 devices.

``python -m tests.memory.run_devices WORKDIR STEPS`` (with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``) prints the losses,
the memory metrics and the parameters' device counts of both runs.
"""

import json
import sys

import jax

from csm_jax.training.run import make_task
from csm_jax.training.trainer import Trainer
from tests.memory.helpers import memory_config


def main():
  workdir, steps = sys.argv[1], int(sys.argv[2])
  out = {}
  for name, devs, mesh in (("one", jax.devices()[:1], (1, 1, 1)),
                           ("eight", jax.devices(), (2, 2, 2))):
    c = memory_config(weights=0.3)
    c.train.steps, c.train.ckpt_every, c.train.eval_every = steps, 1000, 1000
    c.data.batch_size = 8
    c.mesh.data, c.mesh.fsdp, c.mesh.tensor = mesh
    tr = Trainer(c, f"{workdir}/{name}", make_task(c), devices=devs)
    tr.run()
    rows = [json.loads(l) for l in open(f"{workdir}/{name}/metrics.jsonl")]
    out[name] = {k: [r[k] for r in rows if k in r]
                 for k in ("loss", "loss/character", "memory/semantic_norm")}
    mem = tr.state["params"]["model"]["memory"]
    out[name + "_devices"] = max(
        len(x.sharding.device_set) for x in jax.tree.leaves(mem))
  print("RESULT " + json.dumps(out))


if __name__ == "__main__":
  main()
