"""A run's config on disk: the full config and the part checkpoints depend on.

``run_config.json`` is the whole config of the run (what generation and
export rebuild the model from); ``config.json`` holds only its structural
fields (``config.schema.structural_fields``), so that a later run in the
same workdir with another shape is refused while training-only changes
(steps, learning rate, remat) resume.
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections
from etils import epath

from csm_jax.config import schema
from csm_jax.config.errors import UserError
from csm_jax.config.serialize import config_from_json_dict
from csm_jax.store import layout


class WorkdirError(UserError, RuntimeError):
  """The workdir holds a run this config cannot continue."""


class RunConfigError(UserError, RuntimeError):
  """A directory holds no readable csm_jax config; names the file."""


def save_run_config(workdir: str, config) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, layout.RUN_CONFIG)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.write(config.to_json(indent=2, sort_keys=True))
    os.replace(tmp, path)


def _read_json(path: str, what: str):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise RunConfigError(f"{path} is not a readable JSON {what}: {e}") from e


# Sections every reader of a task's config relies on.
_REQUIRED_SECTIONS = {"csm": ("model", "data", "train"),
                      "codec": ("codec", "data", "train")}


def load_config_json(path: str) -> ml_collections.ConfigDict:
  """A config written by ``save_run_config`` or an export, as a ConfigDict."""
  if not os.path.exists(path):
    raise RunConfigError(f"{path} is missing: not a csm_jax run or export")
  raw = _read_json(path, "config")
  # Every reader dispatches on the task first; without it the file is not
  # one of ours, whatever else it holds.
  if not isinstance(raw, dict) or not isinstance(raw.get("task"), str):
    raise RunConfigError(f"{path} is not a csm_jax config: it names no task")
  bad = [k for k in ("model", "data", "train", "codec", "mesh")
         if k in raw and not isinstance(raw[k], dict)]
  if bad:
    raise RunConfigError(f"{path} is not a csm_jax config: section "
                         f"{bad[0]!r} is not a mapping")
  missing = [k for k in _REQUIRED_SECTIONS.get(raw["task"], ())
             if k not in raw]
  if missing:
    raise RunConfigError(f"{path} is not a csm_jax config: a "
                         f"{raw['task']!r} config has no section "
                         f"{missing[0]!r}")
  model = raw.get("model", {})
  nested = [k for k in ("backbone", "decoder")
            if k in model and not isinstance(model[k], dict)]
  if nested:
    raise RunConfigError(f"{path} is not a csm_jax config: section "
                         f"'model.{nested[0]}' is not a mapping")
  config = config_from_json_dict(raw)
  try:
    schema.check_types(config)
  except schema.ConfigError as e:
    raise RunConfigError(f"{path}: {e}") from None
  return config


def read_export_info(directory: str) -> dict:
  """An export's ``export.json`` (step, dtype, files), naming it if unreadable."""
  path = os.path.join(directory, layout.EXPORT_INFO)
  info = _read_json(path, "export description")
  if not isinstance(info, dict):
    raise RunConfigError(f"{path} is not a csm_jax export description")
  return info


def update_export_info(directory: str, **fields) -> dict:
  """Adds ``fields`` to an export's ``export.json``; returns the result."""
  info = read_export_info(directory)
  info.update(fields)
  with open(os.path.join(directory, layout.EXPORT_INFO), "w") as f:
    json.dump(info, f, indent=2)
  return info


def load_run_config(directory: str) -> ml_collections.ConfigDict:
  """The config of a training workdir or an export directory."""
  name = (layout.EXPORT_CONFIG if layout.is_export(directory)
          else layout.RUN_CONFIG)
  return load_config_json(os.path.join(directory, name))


def check_workdir_config(workdir: str, config) -> None:
  """Records the run's structural config, or refuses an incompatible one."""
  structural = schema.structural_fields(config)
  path = epath.Path(workdir) / layout.STRUCTURE
  if path.exists():
    try:
      saved = json.loads(path.read_text())
    except json.JSONDecodeError as e:
      raise WorkdirError(f"{path} is not valid JSON: {e}") from e
    want = json.loads(json.dumps(structural))
    # Only what this version counts as structural is compared: fields an
    # older version recorded beyond that do not make its runs incompatible.
    diffs = _diff(saved, want)
    if diffs:
      raise WorkdirError(
          f"workdir {workdir} holds a run of an incompatible config "
          f"(differs in {', '.join(diffs[:8])}); use a new --workdir or the "
          "run's own config")
    return
  if jax.process_index() == 0:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(structural, indent=2, sort_keys=True))


def _diff(saved, want, prefix="") -> list[str]:
  """Fields of ``want`` that ``saved`` lacks or holds with another value."""
  if isinstance(saved, dict) and isinstance(want, dict):
    out = []
    for k in sorted(want):
      out += _diff(saved.get(k), want[k], f"{prefix}{k}.")
    return out
  return [] if saved == want else [f"{prefix[:-1]} ({saved!r} vs {want!r})"]
