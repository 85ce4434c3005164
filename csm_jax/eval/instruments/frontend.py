"""The instruments' acoustic front end: log-mel frames of 16 kHz audio.

80 mel bands (20 Hz - 8 kHz, triangular filters on the Slaney mel scale) of
the power spectrum of 25 ms Hann windows every 10 ms, as the natural log of
power. Kept in the power domain's log (no per-utterance normalization here)
because the augmentations (``augment``) add noise power and gain there, and
the emotion classifier needs absolute level. Pure numpy: the features of a
whole corpus take seconds and are cached beside the instruments.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft

from csm_jax.audio import io as audio_lib

SAMPLE_RATE = 16000
N_FFT = 512
WINDOW = 400          # 25 ms
HOP = 160             # 10 ms: FRAME_RATE frames per second
N_MELS = 80
FMIN, FMAX = 20.0, 8000.0
FRAME_RATE = SAMPLE_RATE / HOP
LOG_FLOOR = 1e-8      # power floor: digital silence maps to log(1e-8) ~ -18.4
SILENCE = float(np.log(LOG_FLOOR))


def _hz_to_mel(f):
  # Slaney: linear below 1 kHz, logarithmic above.
  f = np.asarray(f, np.float64)
  lin = f / (200.0 / 3)
  log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
  return np.where(f < 1000.0, lin, log)


def _mel_to_hz(m):
  m = np.asarray(m, np.float64)
  lin = m * (200.0 / 3)
  log = 1000.0 * np.exp((m - 15.0) * (np.log(6.4) / 27.0))
  return np.where(m < 15.0, lin, log)


@functools.lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT,
                   sample_rate: int = SAMPLE_RATE, fmin: float = FMIN,
                   fmax: float = FMAX) -> np.ndarray:
  """(n_fft // 2 + 1, n_mels) area-normalized triangular filters."""
  freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
  edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax),
                                 n_mels + 2))
  lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
  up = (freqs[:, None] - lo) / (mid - lo)
  down = (hi - freqs[:, None]) / (hi - mid)
  fb = np.maximum(0.0, np.minimum(up, down))
  fb *= 2.0 / (hi - lo)   # equal area: a band's value is its mean power
  return fb.astype(np.float32)


def band_centers_hz(n_mels: int = N_MELS) -> np.ndarray:
  """Centre frequency of every mel band (for band limiting)."""
  return _mel_to_hz(np.linspace(_hz_to_mel(FMIN), _hz_to_mel(FMAX),
                                n_mels + 2))[1:-1].astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
  w = np.zeros(N_FFT, np.float32)
  start = (N_FFT - WINDOW) // 2
  w[start:start + WINDOW] = np.hanning(WINDOW + 2)[1:-1]
  return w


def num_frames(n_samples: int) -> int:
  return 1 + int(n_samples) // HOP


def log_mel(audio: np.ndarray) -> np.ndarray:
  """(num_frames(len), N_MELS) float32 log mel power of 16 kHz mono audio.

  Frames are centred (frame t covers samples around t * HOP), with zero
  padding at both ends.
  """
  x = np.asarray(audio, np.float32).reshape(-1)
  n = num_frames(x.size)
  pad = N_FFT // 2
  x = np.pad(x, (pad, pad + N_FFT))
  frames = np.lib.stride_tricks.as_strided(
      x, shape=(n, N_FFT), strides=(x.strides[0] * HOP, x.strides[0]),
      writeable=False)
  # Chunks bound the memory of the complex spectra on long inputs.
  out = np.empty((n, N_MELS), np.float32)
  fb, win = mel_filterbank(), _window()
  for s in range(0, n, 4096):
    # scipy keeps float32 (numpy's rfft works in float64, 10x slower here).
    spec = scipy.fft.rfft(frames[s:s + 4096] * win, axis=-1)
    power = spec.real ** 2 + spec.imag ** 2
    out[s:s + 4096] = np.log(power @ fb + LOG_FLOOR)
  return out


def features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
  """Log-mel frames of audio at any rate (resampled to 16 kHz first)."""
  x = np.asarray(audio)
  if x.dtype == np.int16:
    x = audio_lib.from_int16(x)
  return log_mel(audio_lib.resample(np.asarray(x, np.float32), sample_rate,
                                    SAMPLE_RATE))
