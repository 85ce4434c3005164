"""Ahead-of-time plan: ``python -m csm_jax.plan --config=configs/medium.py --topology=v5p-64``.

Compiles the real train step for a TPU slice (needs ``pip install -e .[tpu]``)
or a fake N-device host (``--topology=gpu-8``) on this machine, and prints
per-chip memory against HBM, FLOPs per step, the step-time estimate, implied
MFU and tokens/s, and how every parameter is sharded. Exits non-zero when the
step does not fit. Without --topology the config's default topology is used.
``--device_memory=16GB,80GB`` checks one host device of each size (e.g.
``--topology=gpu-1`` for a single GPU; with ``--config.train.lora.rank=16``
the plan of a LoRA fine-tune).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from csm_jax.cli import errors as cli_errors

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config to plan, e.g. configs/medium.py.", lock_config=True)
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "TPU slice (v4-32, v5e-16, v5p-64, v6e-64, ...) or "
    "cpu-N / gpu-N for a host of N devices. Default: the config's own.")
_JSON = flags.DEFINE_string("json", None, "Also write the report here.")
_MEMORY = flags.DEFINE_string(
    "device_memory", None, "Memory of each device instead of the chip's, "
    "e.g. 16GB, or several (16GB,80GB): the plan says which it fits and is "
    "checked against the largest.")
flags.mark_flag_as_required("config")


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from csm_jax.parallel import topology as topo_lib
  config = _CONFIG.value
  name = _TOPOLOGY.value or config.topology
  if not name:
    raise app.UsageError("the config names no default topology; pass "
                         "--topology")
  name = topo_lib.slice_name_for(name)
  topo_lib.ensure_fake_devices(name)
  if name.startswith(("v4", "v5", "v6")):
    import os
    # Compile for abstract TPU devices on this host; libtpu must not try to
    # find a real TPU VM (its metadata server and worker list).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
  from csm_jax.training.plan import (PlanDoesNotFit, check_fits, format_plan,
                                     make_plan)
  from csm_jax.cli.logs import quiet_library_logs
  quiet_library_logs()
  try:
    memory = (topo_lib.parse_memory(_MEMORY.value) if _MEMORY.value
              else ())
    report = make_plan(config, name, memory)
  except PlanDoesNotFit:
    print("DOES NOT FIT")
    raise  # one line on stderr, exit 1 (the error boundary)
  print(format_plan(report))
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(report, f, indent=2, default=str)
  check_fits(report)


if __name__ == "__main__":
  cli_errors.run(main)
