"""LoRA adapters for the CSM's projections, and folding them into the weights.

A targeted projection ``W`` (config.lora names them) gains an ``nnx.LoRA``
whose ``lora_a`` (in, rank) and ``lora_b`` (rank, out) are
``nnx.LoRAParam``; the layer computes ``x @ W + (alpha / rank) * x @ a @ b``.
``b`` starts at zero, so a fresh adapter leaves the model as it was. The
adapter of a ``Linear`` sits at ``<linear>.lora`` beside its ``kernel``, the
adapters of attention at ``<attn>.lora_q`` .. ``lora_o`` beside ``wq`` ..
``wo``; under the stacked layers they carry the ``layers`` axis too.
``merge_adapters`` folds them into the weights they adapt (for export and
generation), leaving exactly the parameters of the model without LoRA.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import nnx


@dataclasses.dataclass(frozen=True)
class LoraSpec:
  """Rank, alpha and the targeted projections of one stack (``attn.q``...)."""

  rank: int = 0
  alpha: float = 32.0
  targets: tuple[str, ...] = ()

  @property
  def scale(self) -> float:
    return self.alpha / self.rank if self.rank else 0.0

  def wants(self, name: str) -> bool:
    return self.rank > 0 and name in self.targets


def adapter(d_in: int, d_out: int, axes: tuple, spec: LoraSpec, dtype,
            rngs: nnx.Rngs) -> nnx.LoRA:
  """An ``nnx.LoRA`` for a (d_in, d_out) projection whose weight has logical
  axes ``axes`` (in, out); its rank dimension is never sharded."""
  # nnx.LoRA's defaults: a ~ He-uniform, b = 0.
  return nnx.LoRA(
      d_in, spec.rank, d_out, dtype=dtype, param_dtype=jnp.float32,
      rngs=rngs, a_metadata={"logical_axes": (axes[0], None)},
      b_metadata={"logical_axes": (None, axes[1])})


def apply(lora: nnx.LoRA | None, x, scale: float):
  """The adapter's contribution ``scale * x @ a @ b`` (0 without one)."""
  if lora is None:
    return 0.0
  return lora(x) * jnp.asarray(scale, x.dtype)


def _base_of(prefix: str) -> str:
  """Dotted path of the weight an adapter at ``prefix`` adapts."""
  head, _, leaf = prefix.rpartition(".")
  if leaf == "lora":
    return f"{head}.kernel"
  if leaf.startswith("lora_"):
    return f"{head}.w{leaf[len('lora_'):]}"
  raise ValueError(f"{prefix} is not an adapter path")


def merge_adapters(flat: dict, scale: float) -> dict:
  """``flat`` (dotted path -> array) with every adapter folded in:
  ``W + scale * a @ b`` (batched over a leading layers axis), and the
  adapter entries removed."""
  out = {k: v for k, v in flat.items()
         if not k.endswith((".lora_a", ".lora_b"))}
  for key in flat:
    if not key.endswith(".lora_a"):
      continue
    prefix = key[:-len(".lora_a")]
    base = _base_of(prefix)
    if base not in out:
      raise KeyError(f"adapter {prefix} has no weight {base} to merge into")
    w = out[base]
    a = jnp.asarray(flat[key], jnp.float32)
    b = jnp.asarray(flat[f"{prefix}.lora_b"], jnp.float32)
    delta = jnp.matmul(a, b).reshape(w.shape)
    out[base] = (jnp.asarray(w, jnp.float32) + scale * delta).astype(w.dtype)
  return out
