"""Small causal transformer with a sliding context window for the codec bottleneck.

Each frame attends to itself and the previous ``context - 1`` frames. Streaming
keeps, per layer, the rotary-embedded keys and values of the last ``context``
frames plus the absolute position, so a chunk is computed exactly as the
offline pass computes it. (Keeping only the last ``context`` *input* frames
would not be exact beyond one layer: layer 2 at frame t depends on layer-1
states of frames whose own windows reach 2*(context-1) frames back.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.codec.conv import Linear
from csm_jax.config import codec as cfg


class LayerNorm(nnx.Module):

  def __init__(self, dim, *, param_dtype=jnp.float32, eps=1e-5):
    self.scale = nnx.Param(jnp.ones((dim,), param_dtype),
                           logical_axes=("embed",))
    self.bias = nnx.Param(jnp.zeros((dim,), param_dtype),
                          logical_axes=("embed",))
    self.eps = eps

  def __call__(self, x):
    xf = x.astype(jnp.float32)
    mu = xf.mean(-1, keepdims=True)
    var = ((xf - mu) ** 2).mean(-1, keepdims=True)
    y = (xf - mu) * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


def rope(x, positions, base):
  """Rotary embedding of (B, L, H, D) at integer positions (L,)."""
  half = x.shape[-1] // 2
  freqs = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  ang = positions.astype(jnp.float32)[:, None] * freqs[None, :]
  cos, sin = jnp.cos(ang)[None, :, None], jnp.sin(ang)[None, :, None]
  x1, x2 = x[..., :half].astype(jnp.float32), x[..., half:].astype(jnp.float32)
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos],
                         -1).astype(x.dtype)


class Layer(nnx.Module):
  """Pre-norm attention + GELU MLP, each residual branch scaled (LayerScale).

  Rotary embeddings rotate halves of each head (dimension i with i + D/2);
  weights trained with interleaved pairs need their q/k rows permuted.
  """

  def __init__(self, t, *, rngs, dtype, param_dtype):
    d, h = t.width, t.heads
    self.heads, self.head_dim = h, d // h
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.norm1 = LayerNorm(d, param_dtype=param_dtype)
    self.qkv = Linear(d, 3 * d, axes=("embed", "heads"), use_bias=False, **kw)
    self.out = Linear(d, d, axes=("heads", "embed"), use_bias=False, **kw)
    self.norm2 = LayerNorm(d, param_dtype=param_dtype)
    self.up = Linear(d, t.mlp_ratio * d, axes=("embed", "mlp"), **kw)
    self.down = Linear(t.mlp_ratio * d, d, axes=("mlp", "embed"), **kw)
    # Small residual scales keep the freshly initialised transformer close to
    # identity, so it does not disturb the conv stack early in training.
    self.scale1 = nnx.Param(jnp.full((d,), t.layer_scale, param_dtype),
                            logical_axes=("embed",))
    self.scale2 = nnx.Param(jnp.full((d,), t.layer_scale, param_dtype),
                            logical_axes=("embed",))
    self.context, self.base, self.dtype = t.context, t.rope_base, dtype
    # Mimi uses the exact (erf) GELU; older configs lack the field and were
    # trained with the tanh approximation.
    self.approximate_gelu = not cfg.option(t, "transformer.exact_gelu")

  def step(self, x, cache, pos):
    b, n, _ = x.shape
    h = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, self.head_dim)
    positions = pos + jnp.arange(n)
    q = rope(h[:, :, 0], positions, self.base)
    k = rope(h[:, :, 1], positions, self.base)
    v = h[:, :, 2]
    keys = jnp.concatenate([cache["k"].astype(k.dtype), k], 1)
    vals = jnp.concatenate([cache["v"].astype(v.dtype), v], 1)
    c = cache["k"].shape[1]
    key_pos = pos - c + jnp.arange(c + n)
    qp, kp = positions[:, None], key_pos[None, :]
    mask = (kp >= 0) & (kp <= qp) & (kp > qp - self.context)
    att = jax.nn.dot_product_attention(q, keys, vals, mask=mask[None, None])
    x = x + self.scale1[...].astype(x.dtype) * self.out(att.reshape(b, n, -1))
    y = self.down(jax.nn.gelu(self.up(self.norm2(x)),
                              approximate=self.approximate_gelu))
    x = x + self.scale2[...].astype(x.dtype) * y
    return x, {"k": keys[:, -c:], "v": vals[:, -c:]}


class Transformer(nnx.Module):
  """(B, frames, dim) -> (B, frames, dim); projections when dim != width."""

  def __init__(self, dim, t, *, rngs, dtype=jnp.float32,
               param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.proj_in = (Linear(dim, t.width, axes=("embed", "embed"),
                           use_bias=False, **kw) if dim != t.width else None)
    self.proj_out = (Linear(t.width, dim, axes=("embed", "embed"),
                            use_bias=False, **kw) if dim != t.width else None)
    self.layers = nnx.List([Layer(t, **kw) for _ in range(t.layers)])
    self.width, self.heads, self.context = t.width, t.heads, t.context
    self.dtype = dtype

  def init_state(self, batch):
    shape = (batch, self.context, self.heads, self.width // self.heads)
    zeros = jnp.zeros(shape, self.dtype)
    return {"pos": jnp.zeros((), jnp.int32),
            "layers": [{"k": zeros, "v": zeros} for _ in self.layers]}

  def step(self, x, state):
    h = x.astype(self.dtype)
    if self.proj_in is not None:
      h = self.proj_in(h)
    caches = []
    for layer, cache in zip(self.layers, state["layers"]):
      h, cache = layer.step(h, cache, state["pos"])
      caches.append(cache)
    if self.proj_out is not None:
      h = self.proj_out(h)
    return h, {"pos": state["pos"] + x.shape[1], "layers": caches}

  def __call__(self, x):
    return self.step(x, self.init_state(x.shape[0]))[0]
