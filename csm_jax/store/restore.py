"""One way to get a model's weights back: ``restore_params``.

It reads a training workdir (the latest, or a given, committed checkpoint)
or an export directory, builds only the model's abstract state
(``jax.eval_shape``, no optimizer, no allocation), restores the parameter
groups and extra variables straight into that layout with Orbax's partial
restore (the optimizer state is never read), and casts floating arrays once,
during the read, to the dtype asked for.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from csm_jax.store import layout
from csm_jax.store import models
from csm_jax.store.checkpoint import make_manager
from csm_jax.store.run_config import load_run_config


class RestoreError(RuntimeError):
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
  groups = groups or models.param_groups(config.task)
  model_fn = model_fn or (lambda rngs: models.build_model(config, rngs))
  graphdef, params, extra = models.abstract(model_fn, groups)
  sharding = sharding or jax.sharding.SingleDeviceSharding(
      jax.local_devices()[0])
  info, reads = {}, []
  if is_export:
    import json  # pylint: disable=g-import-not-at-top
    with open(os.path.join(directory, layout.EXPORT_INFO)) as f:
      info = json.load(f)
    step = info.get("step")
    reads.append(("params", os.path.join(directory, layout.EXPORT_PARAMS),
                  _target(params, dtype, sharding), False))
    if jax.tree.leaves(extra):
      reads.append(("extra", os.path.join(directory, layout.EXPORT_EXTRA),
                    _target(extra, dtype, sharding), False))
  else:
    manager = make_manager(directory, keep=1000, async_save=False)
    try:
      step = manager.latest_step() if step is None else step
    finally:
      manager.close()
    if step is None:
      raise RestoreError(f"{directory}/{layout.CHECKPOINTS} holds no "
                         "committed checkpoint")
    path = os.path.join(directory, layout.CHECKPOINTS, str(step), "state")
    # Only params and extra are named: the optimizer state is never read.
    reads.append((None, path, {"params": _target(params, dtype, sharding),
                               "extra": _target(extra, dtype, sharding)},
                  True))
  out = {"extra": extra}
  for key, path, target, partial in reads:
    try:
      got = _read(path, target, partial)
    except Exception as e:  # pylint: disable=broad-except
      raise RestoreError(f"{path} could not be restored ({type(e).__name__}:"
                         f" {str(e)[:300]})") from e
    out.update(got if key is None else {key: got})
  return Restored(config=config, graphdef=graphdef, params=out["params"],
                  extra=out["extra"], groups=groups, step=step,
                  directory=directory,
                  kind="export" if is_export else "workdir", info=info)
