"""Codec quality metrics: mel distance, multi-resolution STFT distance, SI-SDR, bitrate.

The jnp metrics work inside jitted eval steps on (B, T) batches. PESQ and
STOI are computed on the host only when the optional ``pesq`` / ``pystoi``
packages import; ``perceptual_metrics`` silently leaves out the missing ones.

Reference and reconstruction are aligned at sample 0: the codec is causal
with no lookahead delay (encoder frame t sees samples up to the end of frame
t, decoder frame t writes samples t*hop .. (t+1)*hop), and its output is the
input zero-padded to whole frames. So a longer reconstruction is cropped at
the end, never shifted (``align``). ``lag`` measures any residual offset by
cross-correlation so a misalignment shows up in reports instead of silently
wrecking SI-SDR.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from csm_jax.codec import losses, spectral


def align(ref, est):
  """Crops (B, T) ref / est to their common length (the codec pads the end
  to whole frames; both start at sample 0)."""
  n = min(ref.shape[-1], est.shape[-1])
  return ref[..., :n], est[..., :n]


def lag(ref: np.ndarray, est: np.ndarray, max_lag: int) -> tuple[int, float]:
  """(lag, correlation) maximising |normalised cross-correlation| of 1-D
  signals over lags in [-max_lag, max_lag]; est[n] ~ ref[n - lag]."""
  ref, est = align(np.asarray(ref, np.float64), np.asarray(est, np.float64))
  n = ref.shape[-1]
  size = 1 << int(np.ceil(np.log2(2 * n + 1)))
  cc = np.fft.irfft(np.fft.rfft(est, size) * np.conj(np.fft.rfft(ref, size)),
                    size)
  lags = np.arange(-max_lag, max_lag + 1)
  vals = cc[lags % size]
  k = int(np.argmax(np.abs(vals)))
  norm = np.sqrt(np.sum(ref ** 2) * np.sum(est ** 2)) + 1e-12
  return int(lags[k]), float(vals[k] / norm)


def mel_distance(ref, est, sample_rate: int,
                 windows=(256, 512, 1024, 2048), bins=(32, 64, 64, 64)):
  """Mean over scales of L1 between log10 mel spectrograms (lower is better)."""
  ref, est = align(ref, est)
  total = 0.0
  for n_fft, n_mels in zip(windows, bins):
    mr = spectral.mel_spectrogram(ref, sample_rate, n_fft, n_mels)
    me = spectral.mel_spectrogram(est, sample_rate, n_fft, n_mels)
    total += jnp.mean(jnp.abs(jnp.log10(mr + 1e-5) - jnp.log10(me + 1e-5)))
  return total / len(windows)


def stft_distance(ref, est, resolutions=((512, 128), (1024, 256), (2048, 512))):
  """Multi-resolution spectral convergence + log-magnitude distance."""
  ref, est = align(ref, est)
  return losses.stft_loss(ref, est, resolutions)


def si_sdr(ref, est, eps: float = 1e-8):
  """Scale-invariant SDR in dB per example, (B, T) -> (B,); lengths are
  aligned by ``align`` first."""
  ref, est = align(ref, est)
  ref = ref - ref.mean(-1, keepdims=True)
  est = est - est.mean(-1, keepdims=True)
  alpha = (jnp.sum(est * ref, -1, keepdims=True)
           / (jnp.sum(ref ** 2, -1, keepdims=True) + eps))
  target = alpha * ref
  noise = est - target
  return 10 * jnp.log10((jnp.sum(target ** 2, -1) + eps)
                        / (jnp.sum(noise ** 2, -1) + eps))


def bitrate(levels: int, codebook_size: int, frame_rate: float) -> float:
  """Bits per second of the codes: levels * log2(codebook) * frame rate."""
  return levels * math.log2(codebook_size) * frame_rate


def perceptual_metrics(ref: np.ndarray, est: np.ndarray,
                       sample_rate: int) -> dict[str, float]:
  """PESQ (wideband, 16 kHz) and STOI of 1-D signals when the packages exist."""
  out = {}
  ref = np.asarray(ref, np.float64)
  est = np.asarray(est, np.float64)
  try:
    from pesq import pesq  # pylint: disable=g-import-not-at-top
    import soxr  # pylint: disable=g-import-not-at-top
    to16 = lambda x: (soxr.resample(x, sample_rate, 16_000)
                      if sample_rate != 16_000 else x)
    r16, e16 = to16(ref), to16(est)
    out["pesq"] = float(pesq(16_000, r16, e16, "wb"))
  except ImportError:
    pass
  try:
    from pystoi import stoi  # pylint: disable=g-import-not-at-top
    out["stoi"] = float(stoi(ref, est, sample_rate, extended=False))
  except ImportError:
    pass
  return out
