"""Folding a LoRA run's adapters into its weights: the model without LoRA.

A LoRA run (``train.lora.rank`` > 0) keeps its adapters as the parameter
group and the frozen weights in ``extra``. ``merge_lora`` turns such a
``Restored`` into the plain model of the same config with
``train.lora.rank = 0``, each adapted weight ``W + (alpha / rank) a @ b``
(``model.lora.merge_adapters``), so an export or a generator built from it
is exactly the fine-tuned model at no extra cost per step.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from csm_jax.model.lora import merge_adapters
from csm_jax.store import models
from csm_jax.store.restore import Restored


def has_adapters(config) -> bool:
  return models.lora_rank(config) > 0


def merge_lora(r: Restored) -> Restored:
  """``r`` with its adapters folded in (``r`` itself when it has none)."""
  if not has_adapters(r.config):
    return r
  lora = r.config.train.lora
  flat = models.flatten(*r.params.values(), r.extra)
  merged = merge_adapters(flat, float(lora.alpha) / float(lora.rank))
  config = r.config.copy_and_resolve_references()
  config.train.lora.rank = 0
  groups = models.param_groups(config.task, config)
  graphdef, params, extra = models.abstract(
      lambda rngs: models.build_model(config, rngs), groups)

  def take(path, leaf):
    name = models.dotted(path)
    return jnp.asarray(merged.pop(name), leaf.dtype)

  params = {g: jax.tree_util.tree_map_with_path(take, p)
            for g, p in params.items()}
  extra = jax.tree_util.tree_map_with_path(take, extra)
  if merged:
    raise ValueError(f"{r.directory}: weights {sorted(merged)[:5]} have no "
                     "place in the model without adapters")
  return dataclasses.replace(r, config=config, graphdef=graphdef,
                             params=params, extra=extra, groups=groups)
