"""Multi-scale STFT discriminator (EnCodec style) for adversarial codec training.

Each scale takes the complex STFT as a 2-channel (real, imag) image of
(frames, frequencies) and applies 2-D convs dilated in time and strided in
frequency; it returns logits and the intermediate feature maps used by the
feature-matching loss.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.codec import spectral

_DN = ("NHWC", "HWIO", "NHWC")


class Conv2d(nnx.Module):
  """'Same'-padded 2-D conv over (time, frequency)."""

  def __init__(self, c_in, c_out, kernel, *, stride=(1, 1), dilation=(1, 1),
               rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    init = jax.nn.initializers.variance_scaling(1.0, "fan_in",
                                                "normal")
    self.kernel = nnx.Param(
        init(rngs.params(), (*kernel, c_in, c_out), param_dtype),
        logical_axes=("kernel", "kernel", "conv_in", "conv_out"))
    self.bias = nnx.Param(jnp.zeros((c_out,), param_dtype),
                          logical_axes=("conv_out",))
    self.stride, self.dilation, self.dtype = stride, dilation, dtype
    self.padding = [((k - 1) * d // 2, (k - 1) * d - (k - 1) * d // 2)
                    for k, d in zip(kernel, dilation)]

  def __call__(self, x):
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), self.kernel[...].astype(self.dtype),
        self.stride, self.padding, rhs_dilation=self.dilation,
        dimension_numbers=_DN)
    return y + self.bias[...].astype(self.dtype)


class STFTDiscriminator(nnx.Module):

  def __init__(self, n_fft, channels, layers, *, rngs, dtype=jnp.float32,
               param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.n_fft = n_fft
    convs = [Conv2d(2, channels, (3, 9), **kw)]
    for i in range(layers):
      convs.append(Conv2d(channels, channels, (3, 9), stride=(1, 2),
                          dilation=(2 ** i, 1), **kw))
    convs.append(Conv2d(channels, channels, (3, 3), **kw))
    self.convs = nnx.List(convs)
    self.out = Conv2d(channels, 1, (3, 3), **kw)

  def __call__(self, audio):
    spec = spectral.stft(audio, self.n_fft, self.n_fft // 4)
    h = jnp.stack([spec.real, spec.imag], axis=-1)
    feats = []
    for conv in self.convs:
      h = jax.nn.leaky_relu(conv(h), 0.2)
      feats.append(h)
    return self.out(h)[..., 0], feats


class MultiScaleSTFTDiscriminator(nnx.Module):
  """(B, T) audio -> ([logits per scale], [[feature maps] per scale])."""

  def __init__(self, c, *, rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    d = c.discriminator
    self.scales = nnx.List([
        STFTDiscriminator(n, d.channels, d.layers, rngs=rngs, dtype=dtype,
                          param_dtype=param_dtype) for n in d.n_ffts])

  def __call__(self, audio):
    outs = [s(audio) for s in self.scales]
    return [o[0] for o in outs], [o[1] for o in outs]
