"""A Llama-style transformer stack: layers created stacked, applied by scan.

Layers are built once with ``nnx.vmap`` (a leading ``layers`` axis on every
parameter) and applied with ``jax.lax.scan`` over that axis, so compile time
does not grow with depth. The scan body is wrapped in ``jax.checkpoint`` with
the policy named in config.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx
from jax.ad_checkpoint import checkpoint_name

from csm_jax.model.attention import Attention, Band
from csm_jax.model.layers import (Precision, RMSNorm, Rope, RopeConfig,
                                  SwiGLU, rope_angles, rope_inv_freq)
from csm_jax.model.lora import LoraSpec
from csm_jax.parallel.sharding import constrain


@dataclasses.dataclass(frozen=True)
class TransformerSpec:
  width: int
  depth: int
  heads: int
  kv_heads: int
  mlp: int
  head_dim: int = 0
  norm_eps: float = 1e-5
  rope: RopeConfig = RopeConfig()
  remat: str = "none"
  scan: bool = True
  embed_axis: str = "embed"
  attention_impl: str | None = None
  lora: LoraSpec = LoraSpec()

  @property
  def dim_per_head(self) -> int:
    return self.head_dim or self.width // self.heads

  @classmethod
  def from_config(cls, t, model_cfg, embed_axis: str,
                  lora: LoraSpec = LoraSpec()) -> "TransformerSpec":
    m = model_cfg
    return cls(
        width=t.width, depth=t.depth, heads=t.heads, kv_heads=t.kv_heads,
        mlp=t.mlp, head_dim=t.head_dim, norm_eps=m.norm_eps,
        rope=RopeConfig(theta=m.rope_theta, scaling=m.rope_scaling,
                        factor=m.rope_factor,
                        low_freq_factor=m.rope_low_freq_factor,
                        high_freq_factor=m.rope_high_freq_factor,
                        original_max_len=m.rope_original_max_len),
        remat=m.remat, scan=m.scan_layers, embed_axis=embed_axis,
        attention_impl=None if m.attention_impl == "auto" else m.attention_impl,
        lora=lora)

  def rope_table(self, positions: jax.Array) -> Rope:
    """This stack's rotation for positions (B, T), shared by its layers."""
    return rope_angles(positions, rope_inv_freq(self.dim_per_head, self.rope))

  def param_count(self) -> int:
    hd = self.dim_per_head
    attn = self.width * hd * (2 * self.heads + 2 * self.kv_heads)
    return self.depth * (attn + 3 * self.width * self.mlp + 2 * self.width) \
        + self.width


def remat_policy(name: str):
  cp = jax.checkpoint_policies
  return {
      "full": cp.nothing_saveable,
      "dots": cp.checkpoint_dots,
      "dots_no_batch": cp.checkpoint_dots_with_no_batch_dims,
      "save_attn_out": cp.save_only_these_names("attn_out"),
  }[name]


class Block(nnx.Module):
  def __init__(self, spec: TransformerSpec, prec: Precision, rngs: nnx.Rngs):
    ax = spec.embed_axis
    self.attn_norm = RMSNorm(spec.width, ax, prec, spec.norm_eps, rngs)
    self.attn = Attention(spec.width, spec.heads, spec.kv_heads,
                          spec.dim_per_head, ax, prec, rngs,
                          impl=spec.attention_impl, lora=spec.lora)
    self.mlp_norm = RMSNorm(spec.width, ax, prec, spec.norm_eps, rngs)
    self.mlp = SwiGLU(spec.width, spec.mlp, ax, prec, rngs, lora=spec.lora)

  def __call__(self, x, rope: Rope, mask, cache=None, cache_index=None,
               band: Band | None = None):
    h, new_cache = self.attn(self.attn_norm(x), rope, mask, cache,
                             cache_index, band)
    h = checkpoint_name(h, "attn_out")
    x = x + h
    x = x + self.mlp(self.mlp_norm(x))
    x = constrain(x, ("batch", "seq", "act_embed"))
    return x, new_cache


def _prepend_layers_axis(module: nnx.Module) -> None:
  for _, var in nnx.iter_graph(module):
    if isinstance(var, nnx.Variable):
      names = var.get_metadata().get("logical_axes")
      if names is not None:
        var.set_metadata("logical_axes", ("layers",) + tuple(names))


class Transformer(nnx.Module):
  """Stacked blocks + final RMSNorm. Input and output are (B, T, width)."""

  def __init__(self, spec: TransformerSpec, prec: Precision, rngs: nnx.Rngs):
    self.spec = spec

    @nnx.split_rngs(splits=spec.depth)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(rngs):
      return Block(spec, prec, rngs)

    self.layers = make(rngs)
    _prepend_layers_axis(self.layers)
    self.norm = RMSNorm(spec.width, spec.embed_axis, prec, spec.norm_eps, rngs)
    self.cache_dtype = prec.dtype

  def init_cache(self, batch: int, length: int, dtype=None):
    """Zeroed stacked KV cache: ((L,B,S,KH,D), (L,B,S,KH,D))."""
    s = self.spec
    shape = (s.depth, batch, length, s.kv_heads, s.dim_per_head)
    dt = dtype or self.cache_dtype
    return (jnp.zeros(shape, dt), jnp.zeros(shape, dt))

  def __call__(self, x, positions, mask, cache=None, cache_index=None,
               band: Band | None = None):
    """``band``: what ``mask`` is known to allow (``attention.Band``)."""
    spec = self.spec
    rope = spec.rope_table(positions)
    graphdef, params = nnx.split(self.layers)

    def body(carry, layer):
      p, c = layer
      block = nnx.merge(graphdef, p)
      y, new_c = block(carry, rope, mask, c, cache_index, band)
      return y, new_c

    if spec.remat != "none":
      body = jax.checkpoint(body, policy=remat_policy(spec.remat),
                            prevent_cse=not spec.scan)
    x = constrain(x, ("batch", "seq", "act_embed"))
    x, new_cache = jax.lax.scan(body, x, (params, cache),
                                unroll=1 if spec.scan else spec.depth)
    return self.norm(x), new_cache


class UnrolledTransformer(nnx.Module):
  """A ``Transformer``'s layers as separate blocks, applied by a Python loop.

  For cached decoding. Every layer's weights are their own arrays and every
  layer has its own KV cache, so each matrix-vector product reads one
  contiguous buffer: on XLA:CPU a product against a slice of the stacked
  ``(layers, ...)`` parameters runs several times below memory bandwidth.
  The loop unrolls at trace time (depth is small at decode shapes).
  """

  def __init__(self, stacked: Transformer):
    self.spec = stacked.spec
    self.cache_dtype = stacked.cache_dtype
    self.norm = stacked.norm
    graphdef, state = nnx.split(stacked.layers)
    blocks = []
    for i in range(stacked.spec.depth):
      # Eager slices: new, contiguous buffers (not views of the stack).
      block = nnx.merge(graphdef, jax.tree.map(lambda a, i=i: a[i], state))
      for _, var in nnx.iter_graph(block):
        if isinstance(var, nnx.Variable):
          names = var.get_metadata().get("logical_axes")
          if names and names[0] == "layers":
            var.set_metadata("logical_axes", tuple(names[1:]))
      blocks.append(block)
    self.blocks = nnx.List(blocks)

  def init_cache(self, batch: int, length: int, dtype=None):
    """Per-layer zeroed caches: ([(B,S,KH,D)] * L, [(B,S,KH,D)] * L)."""
    s = self.spec
    shape = (batch, length, s.kv_heads, s.dim_per_head)
    dt = dtype or self.cache_dtype
    return ([jnp.zeros(shape, dt) for _ in range(s.depth)],
            [jnp.zeros(shape, dt) for _ in range(s.depth)])

  def __call__(self, x, positions, mask, cache=None, cache_index=None,
               band: Band | None = None):
    rope = self.spec.rope_table(positions)
    ks, vs = [], []
    for i, block in enumerate(self.blocks):
      c = None if cache is None else (cache[0][i], cache[1][i])
      x, new_c = block(x, rope, mask, c, cache_index, band)
      if new_c is not None:
        ks.append(new_c[0])
        vs.append(new_c[1])
    return self.norm(x), ((ks, vs) if cache is not None else None)
