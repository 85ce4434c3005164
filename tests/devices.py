"""XLA flags for the subprocesses that fake several CPU devices."""

import os


def xla_flags(devices: int) -> str:
  """The suite's XLA flags (tests/conftest.py) plus ``devices`` host
  devices, so a multi-device subprocess compiles as the suite does."""
  return (os.environ.get("XLA_FLAGS", "") +
          f" --xla_force_host_platform_device_count={devices}").strip()
