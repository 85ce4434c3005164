"""Reconstruction and adversarial losses for training the codec.

Multi-scale mel loss (L1 on log and linear mel), multi-resolution STFT loss
(spectral convergence + log magnitude), hinge GAN losses and relative
feature matching, all taking (B, T) audio or discriminator outputs.

The mel and STFT terms only see magnitudes, so they leave the phase of the
reconstruction free: a codec trained on them alone can sound right while its
waveform is uncorrelated with the input (SI-SDR near -40 dB, the value for
independent signals). ``waveform_loss`` is the phase-sensitive term that ties
the reconstruction to the input sample by sample.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from csm_jax.codec import spectral


def mel_loss(ref, est, sample_rate: int, windows, bins, eps: float = 1e-5):
  """Mean over scales of L1(log mel) + L1(mel)."""
  total = 0.0
  for n_fft, n_mels in zip(windows, bins):
    mr = spectral.mel_spectrogram(ref, sample_rate, n_fft, n_mels)
    me = spectral.mel_spectrogram(est, sample_rate, n_fft, n_mels)
    total += (jnp.mean(jnp.abs(jnp.log(mr + eps) - jnp.log(me + eps)))
              + jnp.mean(jnp.abs(mr - me)))
  return total / len(windows)


def stft_loss(ref, est, resolutions):
  """Mean over (n_fft, hop) resolutions of spectral convergence + L1 log mag."""
  total = 0.0
  for n_fft, hop in resolutions:
    sr_ = spectral.magnitude(ref, n_fft, hop)
    se = spectral.magnitude(est, n_fft, hop)
    sc = (jnp.sqrt(jnp.sum((sr_ - se) ** 2, axis=(1, 2)))
          / jnp.sqrt(jnp.sum(sr_ ** 2, axis=(1, 2)) + 1e-7))
    total += jnp.mean(sc) + jnp.mean(jnp.abs(jnp.log(sr_) - jnp.log(se)))
  return total / len(resolutions)


def waveform_loss(ref, est, eps: float = 1e-8):
  """Negative scale-invariant SDR in dB, pooled over the batch.

  Energies are summed over the whole batch before the log, so an all-silent
  crop adds (almost) nothing instead of dominating the mean as a per-example
  log ratio would. Scale-invariant, so it never fights the mel loss over
  loudness; the log keeps its gradient useful while the reconstruction is
  still uncorrelated with the input.
  """
  ref = ref.astype(jnp.float32)
  est = est.astype(jnp.float32)
  ref = ref - ref.mean(-1, keepdims=True)
  est = est - est.mean(-1, keepdims=True)
  alpha = (jnp.sum(est * ref, -1, keepdims=True)
           / (jnp.sum(ref ** 2, -1, keepdims=True) + eps))
  target = alpha * ref
  return -10 * jnp.log10((jnp.sum(target ** 2) + eps)
                         / (jnp.sum((est - target) ** 2) + eps))


def hinge_discriminator(real_logits, fake_logits):
  """Mean over scales of mean relu(1 - D(real)) + mean relu(1 + D(fake))."""
  f32 = lambda x: x.astype(jnp.float32)  # losses in f32 for any dtype
  terms = [jnp.mean(jax.nn.relu(1 - f32(r))) + jnp.mean(jax.nn.relu(1 + f32(f)))
           for r, f in zip(real_logits, fake_logits)]
  return sum(terms) / len(terms)


def hinge_generator(fake_logits):
  terms = [jnp.mean(jax.nn.relu(1 - f.astype(jnp.float32)))
           for f in fake_logits]
  return sum(terms) / len(terms)


def feature_matching(real_feats, fake_feats):
  """L1 between discriminator feature maps, each relative to the real map's
  mean magnitude so layers of different scale weigh alike."""
  terms = []
  for rs, fs in zip(real_feats, fake_feats):
    for r, f in zip(rs, fs):
      r, f = r.astype(jnp.float32), f.astype(jnp.float32)
      terms.append(jnp.mean(jnp.abs(r - f)) / (jnp.mean(jnp.abs(r)) + 1e-5))
  return sum(terms) / len(terms)
