"""The CPU training flags: added once, never over a user's own setting."""

import os
import subprocess
import sys

import jaxlib
import pytest

from csm_jax.parallel import hardware


@pytest.fixture
def tuned_jaxlib(monkeypatch):
  monkeypatch.setattr(hardware, "TUNED_JAXLIB", jaxlib.__version__)


def test_adds_the_flags_after_the_users_own(tuned_jaxlib):
  env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  added = hardware.tune_cpu_for_training(env)
  assert added == list(hardware.CPU_TRAINING_FLAGS)
  assert env["XLA_FLAGS"].split() == [
      "--xla_force_host_platform_device_count=2",
      *hardware.CPU_TRAINING_FLAGS]
  # A second call adds nothing: the names are already set.
  assert hardware.tune_cpu_for_training(env) == []
  assert env["XLA_FLAGS"].count("ynn_fusion_type") == 1


def test_keeps_a_users_value_of_the_same_flag(tuned_jaxlib):
  env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+dot"}
  assert hardware.tune_cpu_for_training(env) == []
  assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+dot"


def test_unchecked_jaxlib_gets_nothing(monkeypatch):
  monkeypatch.setattr(hardware, "TUNED_JAXLIB", "no-such-release")
  env = {}
  assert hardware.tune_cpu_for_training(env) == []
  assert "XLA_FLAGS" not in env


def test_this_jaxlib_accepts_the_flags():
  # XLA aborts the process on a flag it does not know; run it apart.
  if not jaxlib.__version__.startswith(hardware.TUNED_JAXLIB):
    pytest.skip(f"jaxlib {jaxlib.__version__} is not {hardware.TUNED_JAXLIB}x")
  code = ("from csm_jax.parallel.hardware import tune_cpu_for_training;"
          "assert tune_cpu_for_training();"
          "import jax, jax.numpy as jnp;"
          "print(float(jax.jit(lambda x: (x @ x).sum())(jnp.ones((8, 8)))))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run([sys.executable, "-c", code], env=env,
                       capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-1] == "512.0"
