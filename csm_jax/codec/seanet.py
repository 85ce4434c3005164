"""SEANet encoder and decoder (causal, streamable) as used by EnCodec and Mimi.

Encoder: conv -> [residual units, ELU, strided conv] per ratio -> ELU, conv to
the latent. Decoder mirrors it with transposed convs. Both follow the
``init_state`` / ``step`` streaming protocol of :mod:`csm_jax.codec.conv`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d


class ResidualUnit(nnx.Module):
  """ELU -> dilated conv (dim -> dim/compress) -> ELU -> 1x1 conv, plus skip."""

  def __init__(self, dim: int, kernel: int, dilation: int, compress: int, *,
               rngs, dtype, param_dtype):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.conv1 = CausalConv1d(dim, dim // compress, kernel, dilation=dilation,
                              **kw)
    self.conv2 = CausalConv1d(dim // compress, dim, 1, **kw)

  def init_state(self, batch):
    return (self.conv1.init_state(batch), self.conv2.init_state(batch))

  def step(self, x, state):
    h, s1 = self.conv1.step(jax.nn.elu(x), state[0])
    h, s2 = self.conv2.step(jax.nn.elu(h), state[1])
    return x + h, (s1, s2)


def _residuals(dim, c, rngs, dtype, param_dtype):
  return nnx.List([
      ResidualUnit(dim, c.residual_kernel_size, c.dilation_base ** j,
                   c.compress, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
      for j in range(c.n_residual)])


class EncoderStage(nnx.Module):

  def __init__(self, d_in, d_out, ratio, c, *, rngs, dtype, param_dtype):
    self.res = _residuals(d_in, c, rngs, dtype, param_dtype)
    self.down = CausalConv1d(d_in, d_out, 2 * ratio, stride=ratio, rngs=rngs,
                             dtype=dtype, param_dtype=param_dtype)

  def init_state(self, batch):
    return ([r.init_state(batch) for r in self.res],
            self.down.init_state(batch))

  def step(self, x, state):
    new = []
    for r, s in zip(self.res, state[0]):
      x, s = r.step(x, s)
      new.append(s)
    x, sd = self.down.step(jax.nn.elu(x), state[1])
    return x, (new, sd)


class DecoderStage(nnx.Module):

  def __init__(self, d_in, d_out, ratio, c, *, rngs, dtype, param_dtype):
    self.up = CausalConvTranspose1d(d_in, d_out, 2 * ratio, stride=ratio,
                                    rngs=rngs, dtype=dtype,
                                    param_dtype=param_dtype)
    self.res = _residuals(d_out, c, rngs, dtype, param_dtype)

  def init_state(self, batch):
    return (self.up.init_state(batch), [r.init_state(batch) for r in self.res])

  def step(self, x, state):
    x, su = self.up.step(jax.nn.elu(x), state[0])
    new = []
    for r, s in zip(self.res, state[1]):
      x, s = r.step(x, s)
      new.append(s)
    return x, (su, new)


class _Stack(nnx.Module):
  """conv_in -> stages -> ELU -> conv_out, with streaming state per part."""

  def init_state(self, batch):
    return (self.conv_in.init_state(batch),
            [s.init_state(batch) for s in self.stages],
            self.conv_out.init_state(batch))

  def step(self, x, state):
    x, s_in = self.conv_in.step(x, state[0])
    new = []
    for stage, s in zip(self.stages, state[1]):
      x, s = stage.step(x, s)
      new.append(s)
    x, s_out = self.conv_out.step(jax.nn.elu(x), state[2])
    return x, (s_in, new, s_out)

  def __call__(self, x):
    return self.step(x, self.init_state(x.shape[0]))[0]


class SEANetEncoder(_Stack):
  """(B, T, 1) audio -> (B, T / prod(ratios), latent_dim)."""

  def __init__(self, c, *, rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    ch = tuple(c.channels)
    self.conv_in = CausalConv1d(1, ch[0], c.kernel_size, **kw)
    self.stages = nnx.List([
        EncoderStage(ch[i], ch[i + 1], r, c, **kw)
        for i, r in enumerate(reversed(tuple(c.ratios)))])
    self.conv_out = CausalConv1d(ch[-1], c.latent_dim, c.last_kernel_size,
                                 **kw)


class SEANetDecoder(_Stack):
  """(B, frames, latent_dim) -> (B, frames * prod(ratios), 1) audio."""

  def __init__(self, c, *, rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    ch = tuple(c.channels)
    n = len(c.ratios)
    self.conv_in = CausalConv1d(c.latent_dim, ch[-1], c.kernel_size, **kw)
    # Decoder ratios run in listed order, widths shrink back toward ch[0].
    self.stages = nnx.List([
        DecoderStage(ch[n - i], ch[n - i - 1], r, c, **kw)
        for i, r in enumerate(tuple(c.ratios))])
    self.conv_out = CausalConv1d(ch[0], 1, c.last_kernel_size, **kw)
