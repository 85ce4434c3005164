"""Spectral losses, GAN losses and quality metrics on known signals."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.codec import losses as L
from csm_jax.codec import metrics as M
from csm_jax.codec import spectral


def _signals():
  t = np.arange(2048) / 8000
  ref = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 300 * t)])
  noise = np.random.default_rng(0).standard_normal(ref.shape)
  return jnp.asarray(ref, jnp.float32), jnp.asarray(noise, jnp.float32)


def test_si_sdr_and_bitrate():
  ref, noise = _signals()
  # Noise scaled to 20 dB below the signal (per example).
  scale = jnp.sqrt(jnp.sum(ref ** 2, -1, keepdims=True)
                   / jnp.sum(noise ** 2, -1, keepdims=True)) / 10
  est = 0.5 * (ref + scale * noise)  # SI-SDR ignores the 0.5 gain
  np.testing.assert_allclose(M.si_sdr(ref, est), [20.0, 20.0], atol=0.3)
  assert M.bitrate(8, 256, 50.0) == 3200
  assert M.bitrate(32, 2048, 12.5) == 4400


def test_metrics_align_lengths_and_find_lag():
  ref, noise = _signals()
  # A reconstruction padded to whole frames is cropped, not shifted.
  padded = jnp.pad(ref, ((0, 0), (0, 11)))
  assert float(M.si_sdr(ref, padded).min()) > 60
  assert float(M.mel_distance(ref, padded, 8000)) < 1e-3
  # A delayed copy is found by the lag search; at lag 0 it is uncorrelated.
  x = np.asarray(noise[0])
  assert M.lag(x, np.roll(x, 37), 64)[0] == 37
  assert M.lag(x, -np.roll(x, -5), 64) == (-5, pytest.approx(-1, abs=0.01))
  assert float(M.si_sdr(noise[:1], jnp.roll(noise[:1], 37, -1))[0]) < -15


def test_waveform_loss_sees_phase():
  ref, noise = _signals()
  shifted = jnp.roll(ref, 7, -1)  # same magnitudes, different phase
  assert float(L.waveform_loss(ref, ref + 0.1 * noise)) < -10
  assert float(L.waveform_loss(ref, shifted)) > 0
  assert float(L.waveform_loss(ref, 3 * ref)) < -60  # scale-invariant
  # Batch pooling: a silent example does not dominate the loss.
  silent = jnp.zeros_like(ref[:1])
  pooled = L.waveform_loss(jnp.concatenate([ref, silent]),
                           jnp.concatenate([ref + 0.1 * noise,
                                            0.1 * noise[:1]]))
  assert float(pooled) < -5
  g = jax.grad(lambda e: L.waveform_loss(ref, e))(shifted)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0


def test_spectral_losses_are_zero_only_for_equal_signals():
  ref, noise = _signals()
  windows, bins, res = (128, 256), (16, 32), ((128, 32), (256, 64))

  @jax.jit
  def all_losses(a, b):
    return (L.mel_loss(a, b, 8000, windows, bins), L.stft_loss(a, b, res),
            M.mel_distance(a, b, 8000, windows, bins))

  same = all_losses(ref, ref)
  other = all_losses(ref, ref + 0.3 * noise)
  for s, o in zip(same, other):
    assert float(s) < 1e-4 and float(o) > 0.1
  # The mel filterbank is librosa's: rows sum to something positive.
  fb = spectral.mel_filterbank(8000, 256, 32)
  assert fb.shape == (129, 32) and np.all(fb.sum(0) > 0)
  assert spectral.stft(ref, 256, 64).shape == (2, 1 + 2048 // 64, 129)


def test_gan_losses():
  real, fake = [jnp.full((2, 3), 2.0)], [jnp.full((2, 3), -2.0)]
  assert float(L.hinge_discriminator(real, fake)) == 0.0  # both past margin
  assert float(L.hinge_discriminator(fake, real)) == 6.0
  assert float(L.hinge_generator(fake)) == 3.0
  feats = [[jnp.ones((2, 4)), 2 * jnp.ones((2, 4))]]
  assert float(L.feature_matching(feats, feats)) == 0.0
  shifted = [[jnp.zeros((2, 4)), jnp.zeros((2, 4))]]
  np.testing.assert_allclose(L.feature_matching(feats, shifted), 1.0,
                             atol=1e-4)
