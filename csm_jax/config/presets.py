"""Turns a size name plus a ``get_config`` argument into a ready config.

The argument after the colon in ``--config=configs/debug.py:ARG`` is a comma
separated list of ``dotted.key=value`` overrides, parsed with the field's own
type, e.g. ``configs/debug.py:train.steps=20,model.remat=full``.
"""

from __future__ import annotations

import ast

from csm_jax.config.schema import ConfigError, make_config


def _parse(value: str, like):
  if isinstance(like, bool):
    if value.lower() in ("1", "true", "yes"):
      return True
    if value.lower() in ("0", "false", "no"):
      return False
    raise ValueError(f"not a boolean: {value!r}")
  if isinstance(like, str):
    return value
  parsed = ast.literal_eval(value)
  if isinstance(like, float) and isinstance(parsed, int):
    parsed = float(parsed)
  return parsed


def apply_overrides(config, arg: str | None):
  """Applies ``a.b=v,c=w`` overrides; unknown keys raise ConfigError."""
  if not arg:
    return config
  for item in arg.split(","):
    if not item.strip():
      continue
    if "=" not in item:
      raise ConfigError(item, "override must look like key=value")
    key, value = (s.strip() for s in item.split("=", 1))
    node = config
    parts = key.split(".")
    for p in parts[:-1]:
      if p not in node:
        raise ConfigError(key, f"unknown field {p!r}")
      node = node[p]
    if parts[-1] not in node:
      raise ConfigError(key, "unknown field")
    try:
      node[parts[-1]] = _parse(value, node[parts[-1]])
    except (ValueError, SyntaxError, TypeError) as e:
      raise ConfigError(key, f"bad value {value!r}: {e}") from e
  return config


def preset(size: str, arg: str | None = None, task: str = "csm", **train):
  """make_config(size, task) with per-file training defaults, then ``arg``."""
  config = make_config(size, task)
  for key, value in train.items():
    section, field = key.split("__")
    config[section][field] = value
  return apply_overrides(config, arg)


def codec_training(codec, steps: int = 2000, arg: str | None = None):
  """A task=codec config training ``codec`` (a codec ConfigDict).

  Adam with b1=0.5, b2=0.9 as usual for GAN codecs; no weight decay.
  """
  config = make_config("debug", task="codec")
  config.codec = codec
  t = config.train
  t.steps, t.lr, t.warmup_steps, t.min_lr_ratio = steps, 1e-3, 100, 0.1
  t.b1, t.b2, t.weight_decay, t.grad_clip = 0.5, 0.9, 0.0, 1.0
  t.log_every, t.eval_every, t.eval_steps = 50, 500, 4
  t.ckpt_every = 250
  config.data.batch_size = 8
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
  return apply_overrides(config, arg)
