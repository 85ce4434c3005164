"""Causal 1-D convolutions that run offline or on chunks with carried state.

Every streaming module here has ``init_state(batch)`` and ``step(x, state) ->
(y, state)``; calling the module is ``step`` from the initial (all-zero)
state, so chunked processing reproduces offline output exactly. Activations
are (batch, time, channels).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

_DN = ("NWC", "WIO", "NWC")
PAD_MODES = ("zeros", "replicate")


def _init(rngs, shape, param_dtype):
  # fan_in = kernel * in_channels (all axes but the last are receptive field).
  init = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
  return init(rngs.params(), shape, param_dtype)


class CausalConv1d(nnx.Module):
  """Conv1d padded on the left only: output frame t sees inputs up to the end
  of its stride block, never later ones.

  With effective kernel K = (kernel-1)*dilation+1 and stride s the left pad is
  K - s, so T inputs (T a multiple of s) give exactly T/s outputs, and the
  streaming state is the last K - s inputs.

  ``groups`` splits the channels into that many independent convolutions
  (``groups == in_ch``: depthwise, one kernel per channel).

  ``pad_mode="replicate"`` fills the left pad with copies of the first input
  instead of zeros (as Mimi's latent downsample does); the state then also
  carries a per-example "nothing seen yet" flag, so the first chunk of a
  stream is padded exactly as the offline pass pads.
  """

  def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1,
               dilation: int = 1, rngs: nnx.Rngs, dtype=jnp.float32,
               param_dtype=jnp.float32, pad_mode: str = "zeros",
               groups: int = 1):
    span = (kernel - 1) * dilation + 1
    if span < stride:
      raise ValueError(f"kernel span {span} is shorter than stride {stride}; "
                       "such a conv skips inputs and cannot stream")
    if pad_mode not in PAD_MODES:
      raise ValueError(f"pad_mode {pad_mode!r} not in {PAD_MODES}")
    if in_ch % groups or out_ch % groups:
      raise ValueError(f"{groups} groups do not divide {in_ch} -> {out_ch} "
                       "channels")
    self.kernel = nnx.Param(
        _init(rngs, (kernel, in_ch // groups, out_ch), param_dtype),
        logical_axes=("kernel", "conv_in", "conv_out"))
    self.groups = groups
    self.bias = nnx.Param(jnp.zeros((out_ch,), param_dtype),
                          logical_axes=("conv_out",))
    self.stride = stride
    self.dilation = dilation
    self.in_ch = in_ch
    self.pad = span - stride
    self.pad_mode = pad_mode
    self.dtype = dtype

  def init_state(self, batch: int):
    prev = jnp.zeros((batch, self.pad, self.in_ch), self.dtype)
    if self.pad_mode == "replicate":
      return {"previous": prev, "first": jnp.ones((batch,), jnp.bool_)}
    return prev

  def step(self, x, state):
    if x.shape[1] % self.stride:
      raise ValueError(f"chunk of {x.shape[1]} steps is not a multiple of "
                       f"the conv stride {self.stride}")
    x = x.astype(self.dtype)
    replicate = self.pad_mode == "replicate"
    prev = state["previous"] if replicate else state
    prev = prev.astype(self.dtype)
    if replicate and self.pad:
      if x.shape[1] < self.pad:
        raise ValueError(f"chunk of {x.shape[1]} steps is shorter than the "
                         f"replicate pad {self.pad}")
      first = jnp.broadcast_to(x[:, :1], prev.shape)
      prev = jnp.where(state["first"][:, None, None], first, prev)
    xp = jnp.concatenate([prev, x], axis=1)
    y = jax.lax.conv_general_dilated(
        xp, self.kernel[...].astype(self.dtype), (self.stride,), "VALID",
        rhs_dilation=(self.dilation,), dimension_numbers=_DN,
        feature_group_count=self.groups)
    y = y + self.bias[...].astype(self.dtype)
    tail = xp[:, xp.shape[1] - self.pad:]
    if replicate:
      return y, {"previous": tail, "first": jnp.zeros_like(state["first"])}
    return y, tail

  def __call__(self, x):
    return self.step(x, self.init_state(x.shape[0]))[0]


class CausalConvTranspose1d(nnx.Module):
  """Transposed conv (upsampling by ``stride``) trimmed on the right.

  The full transposed output of T inputs has (T-1)*s + k samples; the first
  T*s are emitted and the remaining k - s (the overlap tail, before bias) are
  carried and added to the start of the next chunk.

  ``depthwise`` (in_ch == out_ch) gives every channel its own kernel, of
  shape (kernel, 1, channels): Mimi's latent upsample.
  """

  def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int,
               rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32,
               depthwise: bool = False):
    if kernel < stride:
      raise ValueError(f"kernel {kernel} < stride {stride} leaves gaps")
    if depthwise and in_ch != out_ch:
      raise ValueError(f"a depthwise transposed conv maps channels to "
                       f"themselves, got {in_ch} -> {out_ch}")
    self.depthwise = depthwise
    shape = (kernel, 1 if depthwise else in_ch, out_ch)
    self.kernel = nnx.Param(_init(rngs, shape, param_dtype),
                            logical_axes=("kernel", "conv_in", "conv_out"))
    self.bias = nnx.Param(jnp.zeros((out_ch,), param_dtype),
                          logical_axes=("conv_out",))
    self.stride = stride
    self.kernel_size = kernel
    self.out_ch = out_ch
    self.tail = kernel - stride
    self.dtype = dtype

  def init_state(self, batch: int):
    return jnp.zeros((batch, self.tail, self.out_ch), self.dtype)

  def step(self, x, state):
    k, s = self.kernel_size, self.stride
    b, t, _ = x.shape
    m = -(-k // s)  # kernel blocks of `stride` taps (last one zero-padded)
    w = self.kernel[...].astype(self.dtype)
    w = jnp.pad(w, ((0, m * s - k), (0, 0), (0, 0)))
    # Input frame i adds x[i] @ w[j] to output sample i*s + j: one matmul,
    # then overlap-add of the m blocks. (XLA's gradient of the equivalent
    # input-dilated convolution is an order of magnitude slower on CPU.)
    if self.depthwise:
      p = jnp.einsum("btc,jc->btjc", x.astype(self.dtype), w[:, 0])
    else:
      p = jnp.einsum("btc,jco->btjo", x.astype(self.dtype), w)
    p = p.reshape(b, t, m, s, -1)
    y = sum(jnp.pad(p[:, :, q], ((0, 0), (q, m - 1 - q), (0, 0), (0, 0)))
            for q in range(m))
    y = y.reshape(b, (t + m - 1) * s, -1)[:, :(t - 1) * s + k]
    y = y.at[:, :self.tail].add(state.astype(self.dtype))
    n = t * s
    return y[:, :n] + self.bias[...].astype(self.dtype), y[:, n:]

  def __call__(self, x):
    return self.step(x, self.init_state(x.shape[0]))[0]


class Linear(nnx.Module):
  """Dense layer whose parameter carries logical axis names."""

  def __init__(self, d_in: int, d_out: int, *, rngs: nnx.Rngs,
               axes=("embed", "mlp"), use_bias: bool = True,
               dtype=jnp.float32, param_dtype=jnp.float32, scale: float = 1.0):
    init = jax.nn.initializers.variance_scaling(scale, "fan_in",
                                                "normal")
    self.kernel = nnx.Param(init(rngs.params(), (d_in, d_out), param_dtype),
                            logical_axes=axes)
    self.bias = (nnx.Param(jnp.zeros((d_out,), param_dtype),
                           logical_axes=(axes[1],)) if use_bias else None)
    self.dtype = dtype

  def __call__(self, x):
    y = x.astype(self.dtype) @ self.kernel[...].astype(self.dtype)
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y
