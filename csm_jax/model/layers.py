"""Basic Llama-style layers: RMSNorm, projections, embeddings, RoPE, SwiGLU.

Every parameter is an ``nnx.Param`` carrying ``logical_axes`` (one name per
dimension) that ``csm_jax.parallel.sharding`` maps to the mesh. Parameters are
stored in ``param_dtype`` and cast to the compute ``dtype`` where used.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.model import lora as lora_lib
from csm_jax.model.lora import LoraSpec
from csm_jax.parallel.sharding import constrain


def dtype_of(name: str):
  return {"float32": jnp.float32, "bfloat16": jnp.bfloat16,
          "float16": jnp.float16}[name]


@dataclasses.dataclass(frozen=True)
class Precision:
  dtype: jnp.dtype = jnp.float32
  param_dtype: jnp.dtype = jnp.float32
  init_std: float = 0.02


def param(rngs: nnx.Rngs, shape: Sequence[int], axes: Sequence[str | None],
          prec: Precision, std: float | None = None, zeros: bool = False,
          ones: bool = False) -> nnx.Param:
  if ones:
    value = jnp.ones(shape, prec.param_dtype)
  elif zeros:
    value = jnp.zeros(shape, prec.param_dtype)
  else:
    std = prec.init_std if std is None else std
    value = (std * jax.random.truncated_normal(
        rngs.params(), -2.0, 2.0, shape, jnp.float32)).astype(prec.param_dtype)
  return nnx.Param(value, logical_axes=tuple(axes))


class RMSNorm(nnx.Module):
  def __init__(self, dim: int, axis_name: str, prec: Precision, eps: float,
               rngs: nnx.Rngs):
    del rngs
    self.scale = param(None, (dim,), (axis_name,), prec, ones=True)
    self.eps = eps
    self.dtype = prec.dtype

  def __call__(self, x: jax.Array) -> jax.Array:
    # Statistics in float32 whatever the compute dtype: bf16 variance is coarse.
    xf = x.astype(jnp.float32)
    var = jnp.mean(jnp.square(xf), axis=-1, keepdims=True)
    y = xf * jax.lax.rsqrt(var + self.eps)
    return (y * self.scale[...].astype(jnp.float32)).astype(self.dtype)


@jax.custom_vjp
def _dense_cpu(x, w):
  return jnp.dot(x, w)


def _dense_cpu_fwd(x, w):
  return jnp.dot(x, w), (x, w)


def _dense_cpu_bwd(res, g):
  x, w = res
  x2 = x.reshape(-1, x.shape[-1])
  # The weight gradient contracts the token axis, major in both operands.
  # Left to autodiff, XLA:CPU transposes the output gradient (the wider
  # side in an MLP) for its matmul library, inside the elementwise fusion
  # that produces it; transposing the input here instead cut the debug
  # SwiGLU's forward and backward from 47 to 40 ms (docs/speed.md).
  dw = jnp.dot(jnp.transpose(x2), g.reshape(-1, g.shape[-1]))
  dx = jax.lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))
  return dx, dw.astype(w.dtype)


_dense_cpu.defvjp(_dense_cpu_fwd, _dense_cpu_bwd)


def dense(x: jax.Array, w: jax.Array) -> jax.Array:
  """``x @ w`` for x (..., d_in) and w (d_in, d_out).

  On CPU its gradient is written out by hand (``_dense_cpu_bwd``); other
  backends differentiate ``jnp.dot`` as usual, so their remat policies see
  the plain dots.
  """
  if jax.default_backend() == "cpu":
    return _dense_cpu(x, w)
  return jnp.dot(x, w)


class Linear(nnx.Module):
  """y = x @ W over the last axis; W has logical axes (in_axis, out_axis).

  With ``lora`` (a ``model.lora.LoraSpec``) a low-rank adapter is added.
  """

  def __init__(self, d_in: int, d_out: int, axes: tuple[str | None, str | None],
               prec: Precision, rngs: nnx.Rngs, std: float | None = None,
               lora: LoraSpec | None = None):
    self.kernel = param(rngs, (d_in, d_out), axes, prec,
                        std=std if std is not None else 1.0 / math.sqrt(d_in))
    self.dtype = prec.dtype
    self.lora = (lora_lib.adapter(d_in, d_out, axes, lora, prec.dtype, rngs)
                 if lora is not None else None)
    self.lora_scale = lora.scale if lora is not None else 0.0

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.astype(self.dtype)
    y = dense(x, self.kernel[...].astype(self.dtype))
    if self.lora is not None:
      y = y + lora_lib.apply(self.lora, x, self.lora_scale)
    return y


class Embed(nnx.Module):
  def __init__(self, num: int, dim: int, axes: tuple[str | None, str | None],
               prec: Precision, rngs: nnx.Rngs):
    self.table = param(rngs, (num, dim), axes, prec)
    self.dtype = prec.dtype

  def __call__(self, ids: jax.Array) -> jax.Array:
    return jnp.take(self.table[...], ids, axis=0).astype(self.dtype)


class SwiGLU(nnx.Module):
  def __init__(self, width: int, hidden: int, embed_axis: str, prec: Precision,
               rngs: nnx.Rngs, lora: LoraSpec = LoraSpec()):
    def spec(name):
      return lora if lora.wants(f"mlp.{name}") else None
    self.gate = Linear(width, hidden, (embed_axis, "mlp"), prec, rngs,
                       lora=spec("gate"))
    self.up = Linear(width, hidden, (embed_axis, "mlp"), prec, rngs,
                     lora=spec("up"))
    self.down = Linear(hidden, width, ("mlp", embed_axis), prec, rngs,
                       lora=spec("down"))

  def __call__(self, x: jax.Array) -> jax.Array:
    h = jax.nn.silu(self.gate(x)) * self.up(x)
    h = constrain(h, ("batch", "seq", "act_mlp"))
    return self.down(h)


# --------------------------------------------------------------------------
# Rotary position embedding
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RopeConfig:
  theta: float = 500_000.0
  scaling: str = "llama3"  # or "none"
  factor: float = 32.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_len: int = 8192


def rope_inv_freq(head_dim: int, cfg: RopeConfig) -> jax.Array:
  """Inverse frequencies, with Llama 3's long-context rescaling if enabled."""
  inv = 1.0 / (cfg.theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32)
                             / head_dim))
  if cfg.scaling == "none":
    return inv
  low_wavelen = cfg.original_max_len / cfg.low_freq_factor
  high_wavelen = cfg.original_max_len / cfg.high_freq_factor
  wavelen = 2 * jnp.pi / inv
  # Long wavelengths are slowed by `factor`, short ones kept, and the band in
  # between interpolated smoothly.
  smooth = (cfg.original_max_len / wavelen - cfg.low_freq_factor) / (
      cfg.high_freq_factor - cfg.low_freq_factor)
  scaled = jnp.where(wavelen > low_wavelen, inv / cfg.factor, inv)
  mid = (1 - smooth) * inv / cfg.factor + smooth * inv
  in_band = (wavelen <= low_wavelen) & (wavelen >= high_wavelen)
  return jnp.where(in_band, mid, scaled)


class Rope(NamedTuple):
  """Rotary angles' sine and cosine for one pass, each (B, T, 1, D/2) f32."""
  sin: jax.Array
  cos: jax.Array


def rope_angles(positions: jax.Array, inv_freq: jax.Array) -> Rope:
  """The rotation for explicit integer positions (B, T), once per pass.

  Every layer's queries and keys rotate by the same table. On CPU it is
  materialized: XLA:CPU otherwise fuses the sine and cosine into each
  rotation, computing them again for every layer's queries and keys, forward
  and backward (about 1 ms of each rotation at the debug step's shapes).
  """
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # (B,T,D/2)
  sin, cos = jnp.sin(angles), jnp.cos(angles)
  if jax.default_backend() == "cpu":
    sin, cos = _materialized(sin), _materialized(cos)
  return Rope(sin[:, :, None, :], cos[:, :, None, :])


def _materialized(x: jax.Array) -> jax.Array:
  """``x`` itself, by a gather of every row: XLA does not fuse an
  elementwise producer into a gather's operand, so ``x`` is computed once
  and stored. (``optimization_barrier`` does not keep it once the step is
  differentiated.)"""
  flat = x.reshape(-1, x.shape[-1])
  return flat[jnp.arange(flat.shape[0])].reshape(x.shape)


def apply_rope(x: jax.Array, rope: Rope) -> jax.Array:
  """Rotates (B, T, H, D) by ``rope`` (``rope_angles``).

  Uses the half-split layout (first half pairs with second half) as Llama's
  Hugging Face weights do.
  """
  xf = x.astype(jnp.float32)
  x1, x2 = jnp.split(xf, 2, axis=-1)
  sin, cos = rope
  out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
  return out.astype(x.dtype)
