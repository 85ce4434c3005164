"""What a results page was made from, so another machine can remake it.

The code's commit (and whether the checkout had uncommitted changes), the
command, the seed and budget, the checkpoint's step and full config, and
the library versions and machine it ran on.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess

_PACKAGES = ("jax", "flax", "optax", "orbax-checkpoint", "grain", "numpy")


def _git(*args: str) -> str | None:
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  try:
    r = subprocess.run(["git", "-C", root, *args], capture_output=True,
                       text=True, timeout=20, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return r.stdout.strip() if r.returncode == 0 else None


def code_version() -> dict:
  """The commit of the code that runs, or the installed version."""
  commit = _git("rev-parse", "HEAD")
  if commit is None:
    try:
      return {"version": importlib.metadata.version("csm_jax")}
    except importlib.metadata.PackageNotFoundError:
      return {"version": "unknown"}
  dirty = _git("status", "--porcelain", "--untracked-files=no")
  return {"commit": commit, "uncommitted_changes": bool(dirty)}


def _versions() -> dict:
  out = {"python": platform.python_version()}
  for p in _PACKAGES:
    try:
      out[p] = importlib.metadata.version(p)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def checkpoint_step(checkpoint: str) -> int | None:
  from csm_jax.store.checkpoint import committed_steps  # pylint: disable=g-import-not-at-top
  steps = committed_steps(os.path.join(checkpoint, "checkpoints"))
  return int(steps[-1]) if steps else None


def provenance(checkpoint: str, config, seed: int, budget: dict,
               command: str = "") -> dict:
  return {
      "code": code_version(), "command": command,
      "checkpoint": os.path.abspath(checkpoint),
      "checkpoint_step": checkpoint_step(checkpoint),
      "seed": int(seed), "budget": budget,
      "config": config.to_dict() if hasattr(config, "to_dict") else config,
      "versions": _versions(),
      "machine": {"platform": platform.platform(),
                  "processor": platform.machine(),
                  "cpu_cores": os.cpu_count()},
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
  }
