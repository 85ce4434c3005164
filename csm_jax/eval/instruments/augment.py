"""Augmentation of log-mel frames, so instruments trained on clean eSpeak
speech still measure the less clean speech a generative model makes.

Everything works on cached log-mel power (``frontend``), never on audio, so
the features of the corpus are computed once. In the power domain the
operations are what they would be on a waveform, up to the cross terms that
average out: gain adds a constant; noise adds its (here flat or tilted)
power spectrum; a band limit multiplies by a low-pass response; a tempo
change resamples the frame axis (rate changes, pitch does not); a small
warp of the band axis moves pitch and formants together, as a resampling
speed change or another vocal tract would. SpecAugment-style masks hide a
few short time spans and bands.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csm_jax.eval.instruments import frontend


@dataclasses.dataclass(frozen=True)
class Augment:
  """Ranges of each perturbation; ``p_*`` are the chances it is applied.

  An example is perturbed at all with chance ``p_augment``: the rest stay
  clean, which keeps much of the speed at which a network fits clean
  speech (on the default corpus the recognizer's loss after 300 steps was
  1.15 per character with every example augmented, 0.48 with none) while
  the perturbed share keeps it from over-fitting clean eSpeak.
  """

  p_augment: float = 0.6
  tempo: tuple[float, float] = (0.93, 1.07)
  warp: tuple[float, float] = (0.97, 1.03)
  gain_db: tuple[float, float] = (-4.0, 4.0)
  p_noise: float = 0.4
  snr_db: tuple[float, float] = (15.0, 40.0)
  p_band_limit: float = 0.3
  cutoff_hz: tuple[float, float] = (3500.0, 7500.0)
  time_masks: int = 1
  time_mask_frames: int = 8
  band_masks: int = 1
  band_mask_bands: int = 6

  def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Perturbed copy of (frames, bands) log-mel power ``x``."""
    if rng.random() >= self.p_augment:
      return x
    x = tempo(x, rng.uniform(*self.tempo))
    x = warp_bands(x, rng.uniform(*self.warp))
    x = x + np.float32(np.log(10.0) / 10.0 * rng.uniform(*self.gain_db))
    if rng.random() < self.p_band_limit:
      x = band_limit(x, rng.uniform(*self.cutoff_hz))
    if rng.random() < self.p_noise:
      x = add_noise(x, rng.uniform(*self.snr_db), rng.uniform(-1.0, 1.0))
    return spec_mask(x, rng, self.time_masks, self.time_mask_frames,
                     self.band_masks, self.band_mask_bands)


NONE = Augment(p_augment=0.0, tempo=(1.0, 1.0), warp=(1.0, 1.0), gain_db=(0.0, 0.0),
               p_noise=0.0, p_band_limit=0.0, time_masks=0, band_masks=0)


def tempo(x: np.ndarray, factor: float) -> np.ndarray:
  """Speech ``factor`` times as fast: frames resampled linearly in time."""
  if abs(factor - 1.0) < 1e-6 or len(x) < 2:
    return x
  n = max(1, int(round(len(x) / factor)))
  pos = np.linspace(0.0, len(x) - 1.0, n)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, len(x) - 1)
  w = (pos - lo)[:, None].astype(np.float32)
  return (x[lo] * (1 - w) + x[hi] * w).astype(np.float32)


def warp_bands(x: np.ndarray, alpha: float) -> np.ndarray:
  """Moves spectral content up (alpha > 1) or down by a factor on the mel
  axis (approximately in Hz above 1 kHz, where the mel scale is log)."""
  if abs(alpha - 1.0) < 1e-6:
    return x
  bands = x.shape[1]
  src = np.clip(np.arange(bands) / alpha, 0, bands - 1)
  lo = np.floor(src).astype(np.int64)
  hi = np.minimum(lo + 1, bands - 1)
  w = (src - lo).astype(np.float32)
  return (x[:, lo] * (1 - w) + x[:, hi] * w).astype(np.float32)


def band_limit(x: np.ndarray, cutoff_hz: float,
               octaves: float = 0.25) -> np.ndarray:
  """Low-pass response: unity below ``cutoff_hz``, ~-60 dB an octave above."""
  f = frontend.band_centers_hz(x.shape[1])
  over = np.maximum(0.0, np.log2(f / cutoff_hz)) / octaves
  atten_db = -15.0 * over ** 2
  return np.logaddexp(x + np.float32(np.log(10.0) / 10.0) * atten_db,
                      np.float32(frontend.SILENCE)).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, tilt: float = 0.0) -> np.ndarray:
  """Adds stationary noise ``snr_db`` below the speech's mean band power;
  ``tilt`` in [-1, 1] tilts its spectrum by up to 6 dB per octave."""
  power = np.exp(x.astype(np.float64))
  active = power.mean(1) > np.exp(frontend.SILENCE) * 1e3
  ref = power[active].mean() if active.any() else power.mean()
  f = frontend.band_centers_hz(x.shape[1])
  shape = (f / 1000.0) ** (2.0 * tilt)
  shape /= shape.mean()
  noise = ref * 10 ** (-snr_db / 10.0) * shape
  return np.log(power + noise[None, :]).astype(np.float32)


def spec_mask(x: np.ndarray, rng: np.random.Generator, time_masks: int,
              max_frames: int, band_masks: int, max_bands: int) -> np.ndarray:
  """Hides short time spans and a few bands behind the utterance's mean."""
  if not (time_masks or band_masks):
    return x
  x = x.copy()
  fill = x.mean(0, keepdims=True)
  for _ in range(time_masks):
    w = int(rng.integers(0, max_frames + 1))
    if w and len(x) > w:
      s = int(rng.integers(0, len(x) - w))
      x[s:s + w] = fill
  for _ in range(band_masks):
    w = int(rng.integers(0, max_bands + 1))
    if w and x.shape[1] > w:
      s = int(rng.integers(0, x.shape[1] - w))
      x[:, s:s + w] = fill[:, s:s + w]
  return x
