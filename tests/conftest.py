"""Shared pytest setup: CPU only, and small configs for fast tests."""

import os
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The suite compiles the same small programs again and again: in many tests,
# in both xdist workers and in the subprocesses of the multi-device and
# command-line tests. One persistent XLA cache, shared by all of them (they
# inherit the environment), compiles each once; it roughly halves the
# trainer tests' time. Tests that count compilations count its hits too.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"csm_jax_tests_xla_cache_{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
# The tests' programs are small, so compiling them costs more than running
# them: LLVM's unoptimized code generation (XLA's own passes still run, and
# floating-point semantics are unchanged) takes about 30% off the suite.
# Subprocesses that set their own XLA_FLAGS compile as usual.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: long-running; excluded by -m 'not slow'")
