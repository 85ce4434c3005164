"""STFT framing and mel filterbanks shared by the codec losses, metrics and discriminator.

Filterbanks come from librosa once per (rate, n_fft, n_mels) and are baked
into the traced computation as constants.
"""

from __future__ import annotations

import functools
import warnings

import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=None)
def _frame_index(n_samples: int, n_fft: int, hop: int) -> np.ndarray:
  n_frames = 1 + (n_samples - n_fft) // hop
  return (np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :])


@functools.lru_cache(maxsize=None)
def _hann(n_fft: int) -> np.ndarray:
  return np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann


def stft(x, n_fft: int, hop: int):
  """Complex STFT of (B, T) audio, frames centred with zero padding:
  (B, 1 + T // hop, n_fft // 2 + 1)."""
  pad = n_fft // 2
  xp = jnp.pad(x.astype(jnp.float32), ((0, 0), (pad, pad)))
  frames = xp[:, _frame_index(xp.shape[1], n_fft, hop)] * _hann(n_fft)
  return jnp.fft.rfft(frames, axis=-1)


def magnitude(x, n_fft: int, hop: int, eps: float = 1e-7):
  spec = stft(x, n_fft, hop)
  # eps inside the sqrt keeps the gradient finite at silent bins.
  return jnp.sqrt(spec.real ** 2 + spec.imag ** 2 + eps)


@functools.lru_cache(maxsize=None)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
  """(n_fft // 2 + 1, n_mels) float32 Slaney mel filterbank from librosa."""
  # librosa takes seconds to import; only the first filterbank needs it.
  from csm_jax.audio.librosa_safe import librosa as import_librosa  # pylint: disable=g-import-not-at-top
  librosa = import_librosa()
  with warnings.catch_warnings():
    # Small FFTs leave some high mel bands empty; that is expected here.
    warnings.simplefilter("ignore")
    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels,
                             fmin=0.0, fmax=sample_rate / 2)
  return np.ascontiguousarray(fb.T.astype(np.float32))


def mel_spectrogram(x, sample_rate: int, n_fft: int, n_mels: int):
  """(B, T) -> (B, frames, n_mels) mel magnitudes, hop n_fft // 4."""
  mag = magnitude(x, n_fft, n_fft // 4)
  return mag @ mel_filterbank(sample_rate, n_fft, n_mels)


# -- causal framing and overlap-add, for the spectral codec's streaming ends --


def hann(n_fft: int) -> np.ndarray:
  """Periodic Hann window of ``n_fft`` samples (float32)."""
  return _hann(n_fft)


def ola_gain(n_fft: int, hop: int) -> float:
  """Sum over overlapping frames of the squared Hann window: constant when
  ``hop`` divides ``n_fft`` at least 3 times (1.5 at a quarter), so
  analysis + synthesis windows reconstruct exactly after dividing by it."""
  w2 = _hann(n_fft) ** 2
  total = w2.reshape(n_fft // hop, hop).sum(0)
  if not np.allclose(total, total[0], rtol=1e-5):
    raise ValueError(f"hop {hop} does not give a constant Hann overlap for "
                     f"n_fft {n_fft}")
  return float(total[0])


def causal_frames(x, previous, n_fft: int, hop: int):
  """Frames of (B, T) audio, T a multiple of ``hop``, each ending at the end
  of its hop: frame t covers samples [t*hop + hop - n_fft, t*hop + hop),
  the first ``n_fft - hop`` coming from ``previous`` (B, n_fft - hop).

  Returns (frames (B, T / hop, n_fft) windowed, new previous)."""
  xp = jnp.concatenate([previous.astype(jnp.float32), x.astype(jnp.float32)],
                       axis=1)
  frames = xp[:, _frame_index(xp.shape[1], n_fft, hop)] * _hann(n_fft)
  return frames, xp[:, xp.shape[1] - (n_fft - hop):]


def overlap_add(frames, tail, hop: int):
  """Overlap-adds (B, F, n_fft) frames at ``hop`` onto the carried ``tail``
  (B, n_fft - hop) of earlier frames. Returns the F * hop finished samples
  and the new tail: a frame's last ``n_fft - hop`` samples wait for later
  frames, so output lags input framing by that much."""
  b, f, n_fft = frames.shape
  m = n_fft // hop
  blocks = frames.reshape(b, f, m, hop)
  # Block q of frame t lands at output block t + q.
  y = sum(jnp.pad(blocks[:, :, q], ((0, 0), (q, m - 1 - q), (0, 0)))
          for q in range(m))
  y = y.reshape(b, (f + m - 1) * hop)
  y = y.at[:, :n_fft - hop].add(tail.astype(y.dtype))
  return y[:, :f * hop], y[:, f * hop:]


def log_mel_frames(frames, sample_rate: int, n_mels: int, eps: float = 1e-5):
  """(B, F, n_fft) windowed frames -> (B, F, n_mels) log mel magnitudes."""
  spec = jnp.fft.rfft(frames, axis=-1)
  mag = jnp.sqrt(spec.real ** 2 + spec.imag ** 2 + 1e-9)
  return jnp.log(mag @ mel_filterbank(sample_rate, frames.shape[-1], n_mels)
                 + eps)
