"""Device mesh from config, and multi-process start-up.

``initialize_distributed`` must run before anything asks JAX for devices: it
is the first thing every entrypoint does, and it is a no-op for one process.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh

from csm_jax.config import schema
from csm_jax.parallel.sharding import MESH_AXES

_INITIALIZED = False


def _multiprocess_env() -> bool:
  env = os.environ
  if env.get("CSM_JAX_DISTRIBUTED", "").lower() in ("1", "true"):
    return True
  if env.get("JAX_COORDINATOR_ADDRESS") or env.get("COORDINATOR_ADDRESS"):
    return True
  if int(env.get("SLURM_NTASKS", "1")) > 1:
    return True
  # TPU pod slices list their workers; a single host lists one.
  hosts = env.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h]) > 1


def initialize_distributed() -> None:
  """Calls jax.distributed.initialize() when the environment is multi-process.

  Coordinator address, process count and id come from the environment
  (JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID), from SLURM,
  or are discovered automatically on TPU pods.
  """
  global _INITIALIZED
  if _INITIALIZED or not _multiprocess_env():
    return
  env = os.environ
  kwargs = {}
  addr = env.get("JAX_COORDINATOR_ADDRESS") or env.get("COORDINATOR_ADDRESS")
  if addr:
    kwargs["coordinator_address"] = addr
  if "JAX_NUM_PROCESSES" in env:
    kwargs["num_processes"] = int(env["JAX_NUM_PROCESSES"])
  if "JAX_PROCESS_ID" in env:
    kwargs["process_id"] = int(env["JAX_PROCESS_ID"])
  if "JAX_LOCAL_DEVICE_IDS" in env:
    kwargs["local_device_ids"] = [
        int(i) for i in env["JAX_LOCAL_DEVICE_IDS"].split(",")]
  jax.distributed.initialize(**kwargs)
  _INITIALIZED = True
  logging.info("distributed: process %d of %d", jax.process_index(),
               jax.process_count())


def make_mesh(config, devices=None) -> Mesh:
  """A (data, fsdp, tensor) mesh over ``devices`` (default: all devices).

  Raises ConfigError naming ``mesh`` when the shape does not fit the devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  shape = schema.resolve_mesh_shape(config, len(devices))
  try:
    from jax.experimental import mesh_utils
    arr = mesh_utils.create_device_mesh(shape, devices=devices,
                                        allow_split_physical_axes=True)
  except Exception:  # pylint: disable=broad-except
    # Abstract or CPU devices without a physical topology: plain reshape.
    arr = np.asarray(devices, dtype=object).reshape(shape)
  return Mesh(arr, MESH_AXES)
