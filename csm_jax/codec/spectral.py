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
