"""Logical axis names -> mesh axes: the one rules table, and helpers using it.

Parameters carry ``logical_axes`` metadata (one name per dimension); main
activations are constrained with ``constrain(x, names)``. ``RULES`` maps each
name to a mesh axis (or a tuple of them, or None = replicated). A dimension
that the mesh axis does not divide is replicated instead of failing, so the
same model runs on 1 device, 8 fake CPU devices or a pod slice.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")

# Data/FSDP shard the backbone (the plan's "data parallelism for the backbone"),
# tensor shards heads/MLP of both stacks ("model parallelism for the decoder").
RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", "fsdp"),        # backbone width on params: FSDP
    ("vocab", "tensor"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("dec_embed", None),      # decoder width: small, replicated over fsdp
    ("codebooks", None),
    ("layers", None),
    ("head_dim", None),
    ("seq", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
)

_RULES_DICT = dict(RULES)


def mesh_axis_sizes(mesh) -> dict[str, int]:
  return dict(zip(mesh.axis_names, mesh.devices.shape))


def logical_to_spec(axes: Sequence[str | None], shape: Sequence[int] | None,
                    mesh, rules=None) -> P:
  """PartitionSpec for one array from its logical axis names.

  A mesh axis is used at most once per array, and only where it divides the
  dimension; otherwise that dimension is replicated.
  """
  rules = _RULES_DICT if rules is None else dict(rules)
  sizes = mesh_axis_sizes(mesh)
  used: set[str] = set()
  spec = []
  for i, name in enumerate(axes):
    target = rules.get(name) if name is not None else None
    if target is None:
      spec.append(None)
      continue
    targets = (target,) if isinstance(target, str) else tuple(target)
    chosen = []
    dim = None if shape is None else shape[i]
    for t in targets:
      if t in used or t not in sizes or sizes[t] == 1:
        continue
      prod = math.prod(sizes[c] for c in chosen) * sizes[t]
      if dim is not None and dim % prod != 0:
        continue
      chosen.append(t)
    used.update(chosen)
    spec.append(None if not chosen else chosen[0] if len(chosen) == 1
                else tuple(chosen))
  return P(*spec)


def _is_var(x) -> bool:
  return isinstance(x, nnx.Variable)


def state_shardings(tree, mesh, rules=None) -> Any:
  """Shardings for a pytree holding nnx Variables (params, optimizer state).

  A Variable is laid out by its ``logical_axes``; any other array (step
  counters, RNG keys) is replicated. Each Variable is kept as a node holding
  its NamedSharding so the result matches the tree's structure for ``jit``.
  Raises ValueError naming the parameter whose metadata does not match its
  rank, which would otherwise surface as an opaque XLA error.
  """
  def one(path, x):
    if not _is_var(x):
      return NamedSharding(mesh, P())
    value = x.get_value()
    names = x.get_metadata().get("logical_axes") or (None,) * value.ndim
    if len(names) != value.ndim:
      raise ValueError(
          f"parameter {jax.tree_util.keystr(path)} has shape {value.shape} "
          f"but logical axes {names}")
    return x.replace(NamedSharding(
        mesh, logical_to_spec(names, value.shape, mesh, rules)))
  return jax.tree_util.tree_map_with_path(one, tree, is_leaf=_is_var)


# --------------------------------------------------------------------------
# Activation constraints
# --------------------------------------------------------------------------

_ACTIVE: contextvars.ContextVar[tuple[Mesh, Any] | None] = \
    contextvars.ContextVar("csm_jax_activation_mesh", default=None)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh | None, rules=None):
  """Within this context, ``constrain`` pins activations to ``mesh``."""
  token = _ACTIVE.set(None if mesh is None else (mesh, rules))
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
  """with_sharding_constraint by logical names; a no-op outside a mesh."""
  active = _ACTIVE.get()
  if active is None:
    return x
  mesh, rules = active
  if math.prod(mesh.devices.shape) == 1:
    return x
  spec = logical_to_spec(axes, x.shape, mesh, rules)
  return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def host_to_global(batch: dict[str, np.ndarray], shardings) -> dict[str, jax.Array]:
  """Process-local numpy batch -> global jax.Arrays laid out by ``shardings``."""
  return {k: jax.make_array_from_process_local_data(shardings[k], v)
          for k, v in batch.items()}
