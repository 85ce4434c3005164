"""The train state pytree, built already sharded, and its shardings.

The state is a plain dict so that Orbax, ``jax.jit`` and tests see the same
thing: ``step``, ``rng`` (raw key data), ``params`` and ``opt`` per parameter
group, ``extra`` (non-trainable variables such as EMA codebooks) and
``skipped`` (updates rejected for non-finite loss or gradients). With LoRA
(``train.lora``) the one group holds only the adapters; the frozen weights
are in ``extra``, so no gradient or optimizer state exists for them.
``train.init_from`` starts the state from another run's (or a converted
model's) weights.

It is never materialized on one host: ``jax.eval_shape`` gives its structure,
the logical axes on each Variable give its shardings, and ``init`` runs under
``jax.jit(out_shardings=...)``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from csm_jax.config import schema
from csm_jax.parallel import sharding as shd
from csm_jax.store import models
from csm_jax.store.adapters import merge_lora
from csm_jax.store.restore import restore_params
from csm_jax.training.optim import make_optimizer
from csm_jax.training.tasks.base import Task


# Blocks a run may add to the model it starts from (they start fresh).
_ADDABLE = ("memory", "prosody")


@dataclasses.dataclass
class StateBuilder:
  """Everything static about a task's train state."""

  task: Task
  groups: dict[str, Any]
  optimizers: dict[str, optax.GradientTransformation]
  graphdef: Any = None
  abstract: Any = None
  init_from: str = ""

  @classmethod
  def create(cls, task: Task, config) -> "StateBuilder":
    groups = task.param_groups()
    opts = {g: make_optimizer(config.train, task.group_learning_rate_scale(g))
            for g in groups}
    return cls(task=task, groups=groups, optimizers=opts,
               init_from=config.train.get("init_from", ""))

  def split(self, model: nnx.Module):
    """graphdef, {group: params}, extra (everything else)."""
    return models.split(model, self.groups)

  def merge(self, graphdef, params, extra) -> nnx.Module:
    return models.merge(graphdef, params, extra, self.groups)

  def init_fn(self, seed: jax.Array) -> dict:
    key = jax.random.key(seed)
    model = self.task.build_model(nnx.Rngs(params=jax.random.fold_in(key, 1)))
    _, params, extra = self.split(model)
    return {
        "step": jnp.zeros((), jnp.int32),
        "rng": jax.random.key_data(jax.random.fold_in(key, 2)),
        "params": params,
        "opt": {g: self.optimizers[g].init(params[g]) for g in self.groups},
        "extra": extra,
        "skipped": jnp.zeros((), jnp.int32),
    }

  def build_abstract(self):
    def graph_only():
      model = self.task.build_model(nnx.Rngs(params=0))
      return self.split(model)[0]
    # eval_shape traces the constructor without allocating any weights.
    self.abstract = jax.eval_shape(self.init_fn, jnp.uint32(0))
    self.graphdef = jax.eval_shape(graph_only)
    return self.abstract

  def shardings(self, mesh) -> Any:
    if self.abstract is None:
      self.build_abstract()
    return shd.state_shardings(self.abstract, mesh)

  def init(self, seed: int, mesh) -> dict:
    """A fresh state; with ``train.init_from`` its weights are that run's."""
    shardings = self.shardings(mesh)
    with shd.activation_sharding(mesh):
      state = jax.jit(self.init_fn, out_shardings=shardings)(jnp.uint32(seed))
    if self.init_from:
      state = self._load_pretrained(state, shardings)
    return state

  def _load_pretrained(self, state: dict, shardings: dict) -> dict:
    """``state`` with every weight the export or workdir ``init_from`` has.

    Only LoRA adapters may be missing from it (they start as a no-op), and
    the memory block (``model.memory``) or the prosody stream
    (``model.prosody``) when the source has none: a trained CSM gains a
    fresh one. The optimizer state stays fresh. A weight of another shape,
    or a model field of another value, is an error naming it.
    """
    config = self.task.config
    source = restore_params(self.init_from)
    mine = schema.structural_fields(config).get("model", {})
    theirs = schema.structural_fields(source.config).get("model", {})
    # Stored precision is cast on load; everything else must agree.
    added = {k for k in _ADDABLE if k in mine and k not in theirs}
    diffs = [k for k in sorted(mine)
             if k != "param_dtype" and mine[k] != theirs.get(k)
             and k not in added]
    if diffs:
      raise schema.ConfigError(
          "train.init_from", f"{self.init_from} holds a model of another "
          "config (" + ", ".join(f"model.{k}: {theirs.get(k)!r} there, "
                                 f"{mine[k]!r} here" for k in diffs[:4])
          + ")")
    merged = merge_lora(source)
    weights = models.flatten(*merged.params.values(), merged.extra)
    used = set()

    def take(path, leaf, sharding):
      name = models.dotted(path)
      if name not in weights:
        if name.endswith((".lora_a", ".lora_b")) or \
            name.split(".", 1)[0] in added:
          return leaf
        raise schema.ConfigError(
            "train.init_from", f"{self.init_from} has no weight {name}")
      w = weights[name]
      if tuple(w.shape) != tuple(leaf.shape):
        raise schema.ConfigError(
            "train.init_from", f"{self.init_from}: {name} has shape "
            f"{tuple(w.shape)}, this model {tuple(leaf.shape)}")
      used.add(name)
      return jax.device_put(jnp.asarray(w, leaf.dtype), sharding)

    out = dict(state)
    out["params"] = {
        g: jax.tree_util.tree_map_with_path(take, p, shardings["params"][g])
        for g, p in state["params"].items()}
    out["extra"] = jax.tree_util.tree_map_with_path(take, state["extra"],
                                                    shardings["extra"])
    unused = sorted(set(weights) - used)
    if unused:
      raise schema.ConfigError(
          "train.init_from", f"{self.init_from} has weights this model "
          f"lacks: {unused[:5]}")
    return out


def abstract_with_shardings(abstract, shardings):
  """ShapeDtypeStructs carrying shardings (for AOT lowering and restore)."""
  return jax.tree.map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract, shardings)


def param_count(abstract) -> dict[str, int]:
  return {g: sum(x.size for x in jax.tree.leaves(p))
          for g, p in abstract["params"].items()}

