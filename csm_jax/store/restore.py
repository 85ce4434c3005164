"""One way to get a model's weights back: ``restore_params``.

It reads a training workdir (the latest, or a given, committed checkpoint)
or an export directory, builds only the model's abstract state
(``jax.eval_shape``, no optimizer, no allocation), restores the parameter
groups and extra variables straight into that layout with Orbax's partial
restore (the optimizer state is never read), and casts floating arrays once,
during the read, to the dtype asked for. When the latest checkpoint cannot
be read, the newest older one that can is used, with a warning.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx

from csm_jax.config.errors import UserError
from csm_jax.store import layout
from csm_jax.store import models
from csm_jax.store.checkpoint import make_manager, reason
from csm_jax.store.run_config import load_run_config, read_export_info


class RestoreError(UserError, RuntimeError):
  """A workdir or export cannot be restored; names the directory and why."""


@dataclasses.dataclass
class Restored:
  """A model's config, graph and weights, as ``restore_params`` returns them."""

  config: Any
  graphdef: Any
  params: dict          # {group: nnx.State}
  extra: Any            # nnx.State of non-parameter variables
  groups: dict
  step: int | None
  directory: str
  kind: str             # "workdir" or "export"
  info: dict = dataclasses.field(default_factory=dict)

  def model(self) -> nnx.Module:
    return models.merge(self.graphdef, self.params, self.extra, self.groups)


def _target(tree, dtype, sharding):
  """ShapeDtypeStructs for Orbax: floating leaves in ``dtype`` (cast on read)."""
  def leaf(x):
    dt = x.dtype
    if dtype is not None and jnp.issubdtype(dt, jnp.floating):
      dt = jnp.dtype(dtype)
    return jax.ShapeDtypeStruct(x.shape, dt, sharding=sharding)
  return jax.tree.map(leaf, tree)


def _read(path: str, target, partial: bool):
  restore_args = ocp.checkpoint_utils.construct_restore_args(target)
  with ocp.PyTreeCheckpointer() as reader:
    return reader.restore(path, args=ocp.args.PyTreeRestore(
        item=target, restore_args=restore_args, partial_restore=partial))


def _newest_readable(directory: str, steps, target):
  """(step, weights) of the first of ``steps`` that reads, newest first.

  A checkpoint that cannot be read (corrupt, cut short) is skipped with a
  warning naming it; it is left in place, for the trainer to set aside on
  its next resume. A given step, or no readable one, raises RestoreError.
  """
  first = None
  for step in steps:
    path = os.path.join(directory, layout.CHECKPOINTS, str(step), "state")
    try:
      got = _read(path, target, True)
    except Exception as e:  # pylint: disable=broad-except
      first = first or RestoreError(
          f"checkpoint {step} of {directory} could not be restored "
          f"({reason(e)}; {path})")
      if len(steps) > 1:
        logging.warning("checkpoint %d of %s cannot be restored (%s); "
                        "trying the previous one", step, directory, reason(e))
      continue
    if first is not None:
      logging.warning("using checkpoint %d of %s: the newer ones cannot be "
                      "restored", step, directory)
    return step, got
  raise first


def restore_params(directory: str, dtype: str | None = None,
                   step: int | None = None, model_fn=None, groups=None,
                   sharding=None) -> Restored:
  """The weights of a workdir or an export, without any optimizer state.

  ``dtype`` (e.g. "float32" on CPU, "bfloat16" for an export) casts floating
  arrays while they are read; None keeps the stored dtype of the abstract
  model. ``model_fn``/``groups`` default to the config's registered model
  (``store.models``); tasks defined above this layer pass their own.
  ``sharding`` places every array (default: the first local device).
  """
  directory = layout.absolute(directory)
  if not os.path.isdir(directory):
    raise RestoreError(f"{directory}: no such directory")
  is_export = layout.is_export(directory)
  if not is_export and not layout.is_workdir(directory):
    raise RestoreError(f"{directory} is neither an export ({layout.EXPORT_INFO}"
                       f") nor a training workdir ({layout.RUN_CONFIG})")
  config = load_run_config(directory)
  groups = groups or models.param_groups(config.task, config)
  model_fn = model_fn or (lambda rngs: models.build_model(config, rngs))
  graphdef, params, extra = models.abstract(model_fn, groups)
  sharding = sharding or jax.sharding.SingleDeviceSharding(
      jax.local_devices()[0])
  info, reads = {}, []
  if is_export:
    info = read_export_info(directory)
    step = info.get("step")
    reads.append(("params", os.path.join(directory, layout.EXPORT_PARAMS),
                  _target(params, dtype, sharding), False))
    if jax.tree.leaves(extra):
      reads.append(("extra", os.path.join(directory, layout.EXPORT_EXTRA),
                    _target(extra, dtype, sharding), False))
  else:
    manager = make_manager(directory, keep=1000, async_save=False)
    try:
      steps = (sorted(manager.all_steps(), reverse=True) if step is None
               else [step])
    finally:
      manager.close()
    if not steps:
      raise RestoreError(f"{directory}/{layout.CHECKPOINTS} holds no "
                         "committed checkpoint")
    # Only params and extra are named: the optimizer state is never read.
    target = {"params": _target(params, dtype, sharding),
              "extra": _target(extra, dtype, sharding)}
    step, got = _newest_readable(directory, steps, target)
    return Restored(config=config, graphdef=graphdef, params=got["params"],
                    extra=got["extra"], groups=groups, step=step,
                    directory=directory, kind="workdir", info=info)
  out = {"extra": extra}
  for key, path, target, partial in reads:
    try:
      got = _read(path, target, partial)
    except Exception as e:  # pylint: disable=broad-except
      raise RestoreError(f"{path} could not be restored ({reason(e)})") from e
    out.update(got if key is None else {key: got})
  return Restored(config=config, graphdef=graphdef, params=out["params"],
                  extra=out["extra"], groups=groups, step=step,
                  directory=directory,
                  kind="export" if is_export else "workdir", info=info)
