"""Runs trained on from a base CSM with a switch changed (the experiments).

Experiments 2 and 3 compare configurations of one trained model: each is
the base run's config with some fields set, trained a given number of
steps from the base's weights (``train.init_from``; parameters the base
lacks, like a memory or the prosody stream, start fresh). A finished run
is reused and a killed one resumes from its checkpoint.
"""

from __future__ import annotations

import copy
import os

import ml_collections

from csm_jax.config import schema
from csm_jax.eval.suite import EvaluationError
from csm_jax.store.checkpoint import committed_steps
from csm_jax.store.run_config import load_run_config
from csm_jax.training.run import train_and_evaluate


def set_field(config, dotted: str, value) -> None:
  *path, leaf = dotted.split(".")
  node = config
  for key in path:
    node = node[key]
  node[leaf] = value


def with_defaults(base) -> ml_collections.ConfigDict:
  """The base run's config on the current schema (fields added since it was
  trained take their defaults, e.g. ``model.memory``)."""
  merged = schema.make_config("debug", base.task)
  merged.unlock()

  def update(dst, src):
    for k, v in src.items():
      if isinstance(v, ml_collections.ConfigDict) and k in dst and \
          isinstance(dst[k], ml_collections.ConfigDict):
        update(dst[k], v)
      else:
        dst[k] = copy.deepcopy(v)
  update(merged, base)
  return merged


def continuation(base, base_dir: str, steps: int, overrides: dict):
  """``base`` with ``overrides`` (dotted field -> value), trained ``steps``
  from ``base_dir``'s weights; a field the model cannot take raises
  ``schema.ConfigError`` naming it, before anything trains."""
  c = with_defaults(base)
  c.train.init_from = base_dir
  c.train.steps = int(steps)
  c.train.ckpt_every = max(1, min(int(c.train.ckpt_every), int(steps)))
  c.train.eval_every = max(1, min(int(c.train.eval_every), int(steps)))
  for key, value in overrides.items():
    set_field(c, key, value)
  schema.validate(c)
  return c


def finished(workdir: str, steps: int) -> bool:
  done = committed_steps(os.path.join(workdir, "checkpoints"))
  return bool(done) and done[-1] >= steps


def load_base(checkpoint: str):
  """The run config of a CSM trained on dialogues, or an EvaluationError."""
  try:
    base = load_run_config(checkpoint)
  except Exception as e:  # a RunConfigError names the file
    raise EvaluationError(f"--checkpoint: {e}") from e
  if base.task != "csm" or base.data.get("source") != "dialogues":
    raise EvaluationError(f"--checkpoint: {checkpoint} is not a CSM trained "
                          "on dialogues")
  return base


# Experiment 3's pair: the same steps from the same weights, with and
# without the prosody stream, so neither has more training than the other.
PROSODY_PAIR = {"plain": {"model.prosody.enabled": False},
                "prosody": {"model.prosody.enabled": True}}


def train_prosody_pair(checkpoint: str, runs_dir: str, steps: int,
                       log=print) -> dict[str, str]:
  """Trains (or reuses) both runs of ``PROSODY_PAIR``; name -> workdir."""
  base = load_base(checkpoint)
  base_dir = os.path.abspath(checkpoint)
  configs = {n: continuation(base, base_dir, steps, o)
             for n, o in PROSODY_PAIR.items()}
  out = {}
  for name, c in configs.items():
    wd = os.path.join(runs_dir, name)
    if not finished(wd, steps):
      log(f"training {name} for {steps} steps from {checkpoint} in {wd}")
      train_and_evaluate(c, wd)
    out[name] = wd
  return out
