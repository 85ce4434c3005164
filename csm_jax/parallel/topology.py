"""Named accelerator topologies for ahead-of-time compilation plans.

``v5p-64`` style names (the Cloud TPU slice names: version and TensorCore
count for v4/v5p, chip count for v5e/v6e) resolve to abstract TPU devices via
``jax.experimental.topologies`` (needs libtpu: ``pip install -e .[tpu]``).
``cpu-8`` / ``gpu-8`` give a host of N fake CPU devices for GPU host layouts;
``parse_memory`` / ``with_memory`` state another device memory (a 16 GB or an
80 GB card) for the plan to check against.
"""

from __future__ import annotations

import dataclasses
import os

from csm_jax.config.errors import UserError

# name -> (topology_name, chip_config_name, chips). v4 and v5p count
# TensorCores (two per chip, fused as one "megacore" device).
TPU_SLICES = {
    "v4-8": ("v4:2x2x1", "megacore", 4),
    "v4-16": ("v4:2x2x2", "megacore", 8),
    "v4-32": ("v4:2x2x4", "megacore", 16),
    "v5p-8": ("v5p:2x2x1", "megacore", 4),
    "v5p-16": ("v5p:2x2x2", "megacore", 8),
    "v5p-32": ("v5p:2x2x4", "megacore", 16),
    "v5p-64": ("v5p:2x4x4", "megacore", 32),
    "v5p-128": ("v5p:4x4x4", "megacore", 64),
    "v5e-4": ("v5e:2x2", "default", 4),
    "v5e-8": ("v5e:2x4", "default", 8),
    "v5e-16": ("v5e:4x4", "default", 16),
    "v5e-64": ("v5e:8x8", "default", 64),
    "v5e-256": ("v5e:16x16", "default", 256),
    "v6e-4": ("v6e:2x2", "default", 4),
    "v6e-8": ("v6e:2x4", "default", 8),
    "v6e-16": ("v6e:4x4", "default", 16),
    "v6e-64": ("v6e:8x8", "default", 64),
    "v6e-256": ("v6e:16x16", "default", 256),
}

# Per-chip HBM (bytes) and dense bf16 peak (FLOP/s), from the datasheets.
CHIPS = {
    "v4": (32 * 2**30, 275e12),
    "v5p": (95 * 2**30, 459e12),
    "v5e": (16 * 2**30, 197e12),
    "v6e": (32 * 2**30, 918e12),
    "h100": (80 * 2**30, 989e12),
    "cpu": (24 * 2**30, 0.0),
}


class TopologyError(UserError, ValueError):
  pass


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str
  platform: str  # "tpu" or "cpu"
  chips: int
  hbm_bytes: int
  peak_flops: float
  devices: tuple


def known_names() -> list[str]:
  return sorted(TPU_SLICES) + ["cpu-N", "gpu-N (N fake CPU devices)"]


def _fake_host(name: str, n: int, chip: str) -> Topology:
  import jax  # pylint: disable=g-import-not-at-top
  devices = jax.devices("cpu")
  if len(devices) < n:
    raise TopologyError(
        f"topology {name} needs {n} CPU devices but {len(devices)} exist; set "
        f"XLA_FLAGS=--xla_force_host_platform_device_count={n} before "
        "starting Python (the plan CLI does this itself)")
  hbm, peak = CHIPS[chip]
  return Topology(name, "cpu", n, hbm, peak, tuple(devices[:n]))


def resolve(name: str) -> Topology:
  """Abstract devices for a named topology; TopologyError if unknown."""
  if name.startswith(("cpu-", "gpu-")):
    n = int(name.split("-")[1])
    return _fake_host(name, n, "h100" if name.startswith("gpu") else "cpu")
  if name not in TPU_SLICES:
    raise TopologyError(f"unknown topology {name!r}; known: {known_names()}")
  topo_name, chip_config, chips = TPU_SLICES[name]
  # A plan only compiles against the topology's description and never
  # touches a chip, so another process holding libtpu (a second test worker,
  # a plan in another shell) must not stop it at libtpu's process lockfile.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
  try:
    from jax.experimental import topologies  # pylint: disable=g-import-not-at-top
    desc = topologies.get_topology_desc(
        platform="tpu", topology_name=topo_name, chip_config_name=chip_config,
        chips_per_host_bounds=(2, 2, 1), num_slices=1)
  except Exception as e:  # pylint: disable=broad-except
    raise TopologyError(
        f"cannot build TPU topology {name} ({topo_name}): {e}. Ahead-of-time "
        "TPU plans need libtpu: pip install -e '.[tpu]'") from e
  devices = tuple(desc.devices)
  if len(devices) != chips:
    raise TopologyError(f"{name}: expected {chips} devices, got {len(devices)}")
  hbm, peak = CHIPS[name.split("-")[0]]
  return Topology(name, "tpu", chips, hbm, peak, devices)


def slice_name_for(config_topology: str) -> str:
  """Maps a size-table topology ('v5e:4x4') or slice name to a slice name."""
  if config_topology in TPU_SLICES or config_topology.startswith(("cpu-", "gpu-")):
    return config_topology
  for name, (topo, _, _) in TPU_SLICES.items():
    if topo == config_topology:
      return name
  raise TopologyError(f"unknown topology {config_topology!r}")


def ensure_fake_devices(name: str) -> None:
  """For cpu-N/gpu-N, asks XLA for N host devices (before jax is imported)."""
  if name.startswith(("cpu-", "gpu-")):
    n = int(name.split("-")[1])
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in flags:
      os.environ["XLA_FLAGS"] = (
          f"{flags} --xla_force_host_platform_device_count={n}").strip()


def parse_memory(spec: str) -> tuple[int, ...]:
  """Device memory sizes from ``"16GB"``, ``"16GB,80GB"`` or ``"24GiB"``.

  GB and GiB both count 2**30 bytes (an accelerator's "80 GB" is binary).
  """
  out = []
  for part in str(spec).split(","):
    p = part.strip().upper()
    for suffix in ("GIB", "GB", "G"):
      if p.endswith(suffix):
        p = p[:-len(suffix)]
        break
    try:
      gib = float(p)
    except ValueError:
      raise TopologyError(f"device memory {part.strip()!r}: expected sizes "
                          "like 16GB or 16GB,80GB") from None
    if gib <= 0:
      raise TopologyError(f"device memory {part.strip()!r} must be positive")
    out.append(int(gib * 2**30))
  return tuple(out)


def with_memory(topo: Topology, hbm_bytes: int) -> Topology:
  """``topo`` with each device holding ``hbm_bytes`` (e.g. a 16 GB card)."""
  return dataclasses.replace(topo, hbm_bytes=int(hbm_bytes))


def mib(x: float) -> str:
  return f"{x / 2**20:,.0f} MiB" if x < 2**30 else f"{x / 2**30:,.2f} GiB"


