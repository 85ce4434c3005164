"""Shared pieces of the prosody-stream tests: a tiny two-stage config,
stats fitted on synthetic contours, a character tokenizer and a tone codec.

The tone codec is a real (if simple) codec for tests: codebook 0 holds a
frame's pitch on a log scale, codebook 1 its level, and decoding renders a
phase-continuous sine (voiced) or faint noise (unvoiced), so the F0 of its
audio is exactly what its codes say.
"""

import numpy as np

from csm_jax.data import prosody_tokens as pt
from tests.foundation.tiny import tiny_config

SR = 8000
FRAME_RATE = 25.0
HOP = int(SR / FRAME_RATE)   # 320 samples
PITCH_LO, PITCH_HI = 110.0, 330.0
PITCH_CODES = 29             # codes 1..29: voiced pitch bins
UNVOICED = 30                # code 30 of codebook 0: no pitch


def prosody_config(**overrides):
  c = tiny_config(**overrides)
  c.model.prosody.enabled = True
  c.model.prosody.f0_bins = 16
  c.model.prosody.energy_bins = 4
  c.model.prosody.style_classes = 2
  c.model.prosody.intensity_bins = 2
  return c


class CharTokenizer:
  def encode_turn(self, speaker, text):
    return [4 + speaker] + [16 + (ord(ch) % 64) for ch in text]


def pitch_code(hz):
  x = np.log(np.asarray(hz, np.float64) / PITCH_LO) / np.log(PITCH_HI / PITCH_LO)
  return (1 + np.clip(np.round(x * (PITCH_CODES - 1)), 0, PITCH_CODES - 1)
          ).astype(np.int32)


def code_pitch(code):
  x = (np.asarray(code, np.float64) - 1) / (PITCH_CODES - 1)
  return PITCH_LO * (PITCH_HI / PITCH_LO) ** x


class _Stream:
  def __init__(self, codec):
    self.codec, self.phase = codec, 0.0

  def push(self, codes):
    out, self.phase = self.codec.render(codes, self.phase)
    return out


class ToneCodec:
  """See the module docstring; 4 levels of 32 codes at 25 Hz, 8 kHz."""

  sample_rate, frame_rate, levels, codebook_size = SR, FRAME_RATE, 4, 32

  def render(self, codes, phase=0.0):
    codes = np.asarray(codes)
    rng = np.random.default_rng(0)
    out = []
    t = np.arange(HOP)
    for frame in codes:
      c0 = int(frame[0])
      amp = 0.05 + 0.25 * (int(frame[1]) % 8) / 7 if len(frame) > 1 else 0.2
      if 1 <= c0 <= PITCH_CODES:
        f = float(code_pitch(c0))
        x = amp * np.sin(phase + 2 * np.pi * f * (t + 1) / SR)
        phase = float(phase + 2 * np.pi * f * HOP / SR) % (2 * np.pi)
      else:
        x = 0.003 * rng.standard_normal(HOP)
      out.append(x)
    audio = np.concatenate(out) if out else np.zeros(0)
    return audio.astype(np.float32), phase

  def decode(self, codes):
    return self.render(codes)[0]

  def streaming_decoder(self):
    return _Stream(self)


def utterance_codes(rng, n_frames):
  """A random phrase: voiced runs with smooth pitch movement and pauses."""
  codes = np.zeros((n_frames, 4), np.int32)
  base = rng.uniform(150, 230)
  slope = rng.uniform(-1.0, 1.0)
  i = 0
  while i < n_frames:
    run = int(rng.integers(6, 14))
    hz = base * 2 ** (slope * np.linspace(0, 0.5, run) +
                      rng.uniform(-0.3, 0.3))
    k = min(run, n_frames - i)
    codes[i:i + k, 0] = pitch_code(hz[:k])
    codes[i:i + k, 1] = rng.integers(4, 8)
    i += k
    gap = min(int(rng.integers(1, 3)), n_frames - i)
    codes[i:i + gap, 0] = UNVOICED
    codes[i:i + gap, 1] = 1
    i += gap
  codes[:, 2] = codes[:, 0]
  codes[:, 3] = codes[:, 1]
  return codes


def fitted_stats(config, contours, speakers):
  feats = np.zeros((len(contours), len(pt.STYLE_FEATURES)))
  for i, c in enumerate(contours):
    v = c.log_f0[np.isfinite(c.log_f0)]
    feats[i] = [v.mean() if len(v) else 0, v.std() if len(v) else 0,
                c.energy_db.mean(), len(c)]
  labels = np.arange(len(contours)) % 2
  return pt.fit_stats(contours, speakers, feats, labels, ["calm", "lively"],
                      config.model.prosody)


def fitted_bins(config, turns=8, frames=20):
  """Binning fitted on ``turns`` random tone-codec utterances."""
  rng = np.random.default_rng(0)
  codec = ToneCodec()
  contours = [pt.frame_contour(codec.decode(x), SR, FRAME_RATE, len(x))
              for x in (utterance_codes(rng, frames) for _ in range(turns))]
  return pt.ProsodyBins(config.model.prosody,
                        fitted_stats(config, contours, [0] * turns))
