"""Which module a run's config builds, and how its parameters are grouped.

A checkpoint keeps parameters per group (``state["params"][group]``, one
optimizer each) and every other variable under ``state["extra"]``. The
trainer and the loaders split models the same way because both call
``split`` and ``merge`` here with the groups of ``param_groups``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
from flax import nnx

from csm_jax.codec.model import CodecGAN
from csm_jax.model.csm import CSM

ModelFn = Callable[[nnx.Rngs], nnx.Module]


def build_model(config, rngs: nnx.Rngs) -> nnx.Module:
  """The module a ``task=csm`` or ``task=codec`` config trains."""
  if config.task == "csm":
    return CSM(config.model, rngs, lora=config.train.get("lora"))
  if config.task == "codec":
    return CodecGAN(config.codec, rngs=rngs)
  raise ValueError(f"config.task: no model is registered for {config.task!r}")


def param_groups(task: str, config=None) -> dict[str, Any]:
  """Group name -> nnx filter of the trainable parameters of ``task``'s groups.

  With LoRA (``config.train.lora.rank`` > 0) only the adapters
  (``nnx.LoRAParam``) are trained; every other weight is frozen and rides
  in ``extra`` with the non-parameter variables.
  """
  if config is not None and lora_rank(config):
    return {"model": nnx.LoRAParam}
  if task == "codec":
    return {
        "generator": nnx.All(nnx.Param, nnx.PathContains("codec")),
        "discriminator": nnx.All(nnx.Param,
                                 nnx.PathContains("discriminator")),
    }
  return {"model": nnx.Param}


def lora_rank(config) -> int:
  lora = config.get("train", {}).get("lora") if config is not None else None
  return int(lora.rank) if lora is not None else 0


def split(model: nnx.Module, groups: dict[str, Any]):
  """graphdef, {group: params}, extra (every non-parameter variable)."""
  graphdef, *parts = nnx.split(model, *groups.values(), ...)
  return graphdef, dict(zip(groups, parts[:-1])), parts[-1]


def merge(graphdef, params: dict, extra, groups: dict[str, Any]) -> nnx.Module:
  return nnx.merge(graphdef, *[params[g] for g in groups], extra)


def abstract(model_fn: ModelFn, groups: dict[str, Any]):
  """(graphdef, {group: abstract params}, abstract extra), nothing allocated."""
  # A GraphDef has no array leaves, so eval_shape hands it back as it is.
  return jax.eval_shape(
      lambda: split(model_fn(nnx.Rngs(params=0)), groups))


def dotted(path) -> str:
  """``backbone.layers.attn.wq``: a state leaf's key path as one name."""
  parts = []
  for k in path:
    if isinstance(k, jax.tree_util.GetAttrKey):
      if k.name != "value":
        parts.append(k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      parts.append(str(k.idx))
    else:
      parts.append(str(getattr(k, "key", k)))
  return ".".join(parts)


def flatten(*trees) -> dict[str, Any]:
  """Every leaf of ``trees`` (states of one model) by its dotted name."""
  out = {}
  for tree in trees:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
      out[dotted(path)] = leaf
  return out
