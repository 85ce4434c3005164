"""The spectral codec's ends: log-mel frames in, an iSTFT head out (Vocos-style).

``MelEncoder`` frames audio causally at the STFT hop, takes log-mel
magnitudes, runs residual conv blocks at that frame rate and a strided conv
down to the codec frame rate. ``ISTFTDecoder`` mirrors it: a transposed conv
up to the STFT frame rate, residual conv blocks, then a linear head giving
each frame's log-magnitude and phase, inverted by an inverse FFT and
overlap-add. No stage works on raw samples, which is what makes this codec
cheap to train on a CPU (a SEANet decoder runs its convolutions at the audio
rate). Both follow the ``init_state`` / ``step`` streaming protocol of
:mod:`csm_jax.codec.conv`; overlap-add makes the decoder's output lag its
input framing by ``n_fft - hop`` samples (``ISTFTDecoder.delay``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.codec import spectral
from csm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d, Linear
from csm_jax.codec.seanet import ResidualUnit
from csm_jax.codec.transformer import LayerNorm
from csm_jax.config import codec as cfg

# Log-mel of eSpeak-level speech spans about [-11.5, 3]; centring it keeps
# the first conv's pre-activations near unit scale at initialization.
_MEL_SHIFT, _MEL_SCALE = 4.0, 0.25
# exp() of the predicted log-magnitude is capped (as Vocos does), so an
# early, untrained frame cannot blow the overlap-add up.
_MAX_MAGNITUDE = 100.0


# Vocos's ConvNeXt block: a 7-tap depthwise conv, and an MLP 3x as wide.
_CONVNEXT_KERNEL, _CONVNEXT_RATIO = 7, 3


class ConvNeXtBlock(nnx.Module):
  """Causal depthwise conv -> LayerNorm -> MLP (GELU), scaled, plus skip.

  As Vocos's backbone block, with the depthwise conv padded on the left
  only so it streams, and its per-channel scale starting at 1/blocks. At
  the debug row's width it costs twice the residual unit's step time and
  read no better after the same 1,200 steps (docs/codec.md), so the
  residual unit stays the default."""

  def __init__(self, width: int, n_blocks: int, *, rngs, dtype, param_dtype):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.dw = CausalConv1d(width, width, _CONVNEXT_KERNEL, groups=width, **kw)
    self.norm = LayerNorm(width, param_dtype=param_dtype)
    self.up = Linear(width, _CONVNEXT_RATIO * width, **kw)
    self.down = Linear(_CONVNEXT_RATIO * width, width, axes=("mlp", "embed"),
                       **kw)
    self.scale = nnx.Param(jnp.full((width,), 1.0 / max(n_blocks, 1),
                                    param_dtype), logical_axes=("embed",))

  def init_state(self, batch):
    return self.dw.init_state(batch)

  def step(self, x, state):
    h, state = self.dw.step(x, state)
    h = self.down(jax.nn.gelu(self.up(self.norm(h))))
    return x + h * self.scale[...].astype(h.dtype), state


def _blocks(width, s, kw):
  if cfg.option(s, "spectral.block") == "convnext":
    return nnx.List([ConvNeXtBlock(width, s.blocks, **kw)
                     for _ in range(s.blocks)])
  return nnx.List([ResidualUnit(width, s.kernel, s.dilation_base ** j, 2,
                                **kw) for j in range(s.blocks)])


def _run_blocks(blocks, x, states):
  new = []
  for blk, st in zip(blocks, states):
    x, st = blk.step(x, st)
    new.append(st)
  return x, new


class MelEncoder(nnx.Module):
  """(B, T, 1) audio -> (B, T / (hop * frames_per_code), latent_dim)."""

  def __init__(self, c, *, rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    s = c.spectral
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.n_fft, self.hop, self.n_mels = s.n_fft, s.hop, s.n_mels
    self.sample_rate = c.sample_rate
    self.conv_in = CausalConv1d(s.n_mels, s.width, s.kernel, **kw)
    self.blocks = _blocks(s.width, s, kw)
    r = s.frames_per_code
    self.down = CausalConv1d(s.width, c.latent_dim, 2 * r if r > 1 else 1,
                             stride=r, **kw)
    self.dtype = dtype

  def init_state(self, batch):
    return (jnp.zeros((batch, self.n_fft - self.hop), jnp.float32),
            self.conv_in.init_state(batch),
            [b.init_state(batch) for b in self.blocks],
            self.down.init_state(batch))

  def step(self, x, state):
    frames, prev = spectral.causal_frames(x[..., 0], state[0], self.n_fft,
                                          self.hop)
    mel = spectral.log_mel_frames(frames, self.sample_rate, self.n_mels)
    h, s_in = self.conv_in.step(
        ((mel + _MEL_SHIFT) * _MEL_SCALE).astype(self.dtype), state[1])
    h, s_blocks = _run_blocks(self.blocks, h, state[2])
    h, s_down = self.down.step(jax.nn.elu(h), state[3])
    return h, (prev, s_in, s_blocks, s_down)

  def __call__(self, x):
    return self.step(x, self.init_state(x.shape[0]))[0]


class ISTFTDecoder(nnx.Module):
  """(B, frames, latent_dim) -> (B, frames * hop * frames_per_code, 1) audio,
  ``delay`` samples behind the encoder's framing."""

  def __init__(self, c, *, rngs, dtype=jnp.float32, param_dtype=jnp.float32):
    s = c.spectral
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.n_fft, self.hop = s.n_fft, s.hop
    r = s.frames_per_code
    self.up = (CausalConvTranspose1d(c.latent_dim, s.width, 2 * r, stride=r,
                                     **kw) if r > 1 else
               CausalConv1d(c.latent_dim, s.width, 1, **kw))
    self.blocks = _blocks(s.width, s, kw)
    self.bins = s.n_fft // 2 + 1
    self.head = Linear(s.width, 2 * self.bins, axes=("embed", None), **kw)
    self.delay = s.n_fft - s.hop
    self.gain = spectral.ola_gain(s.n_fft, s.hop)

  def init_state(self, batch):
    return (self.up.init_state(batch),
            [b.init_state(batch) for b in self.blocks],
            jnp.zeros((batch, self.delay), jnp.float32))

  def spectrum(self, h):
    """Head output (B, F, 2 * bins) -> (B, F, bins) real and imaginary
    parts: a log-magnitude and a phase per bin (as Vocos)."""
    out = self.head(jax.nn.elu(h)).astype(jnp.float32)
    logmag, phase = out[..., :self.bins], out[..., self.bins:]
    mag = jnp.minimum(jnp.exp(logmag), _MAX_MAGNITUDE)
    return mag * jnp.cos(phase), mag * jnp.sin(phase)

  def synthesize(self, re, im, tail):
    """Inverse STFT of (B, F, bins) real and imaginary parts onto the
    carried overlap ``tail``: (F * hop finished samples, new tail). The
    Hann synthesis window over its constant overlap gain inverts a
    Hann-windowed analysis (``spectral.causal_frames``) exactly."""
    frames = jnp.fft.irfft(jax.lax.complex(re, im), n=self.n_fft, axis=-1)
    frames = frames * (spectral.hann(self.n_fft) / self.gain)
    return spectral.overlap_add(frames, tail, self.hop)

  def step(self, z, state):
    h, s_up = self.up.step(z, state[0])
    h, s_blocks = _run_blocks(self.blocks, h, state[1])
    y, tail = self.synthesize(*self.spectrum(h), state[2])
    return y[..., None], (s_up, s_blocks, tail)

  def __call__(self, z):
    return self.step(z, self.init_state(z.shape[0]))[0]
