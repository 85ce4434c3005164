"""Prosody features on signals with known answers; semantic vectors."""

import numpy as np
import pytest

from csm_jax.data import features

SR = 16000


def _tone(f_start, f_end, seconds=1.0, amp=0.3):
  t = np.arange(int(SR * seconds)) / SR
  # Exponential chirp: constant slope in semitones per second.
  f = f_start * (f_end / f_start) ** (t / seconds)
  phase = 2 * np.pi * np.cumsum(f) / SR
  return (amp * np.sin(phase)).astype(np.float32)


def test_f0_of_steady_tone():
  p = features.prosody(_tone(200, 200), SR, "one two three four")
  assert abs(p["f0_mean_hz"] - 200) < 4
  assert p["voiced_ratio"] > 0.8
  assert abs(p["f0_slope_st_per_s"]) < 0.5
  assert abs(p["duration_s"] - 1.0) < 1e-6
  assert abs(p["words_per_s"] - 4.0) < 1e-6
  assert -14 < p["rms_db"] < -9      # sine of amplitude 0.3: -13.5 dBFS


def test_f0_slope_sign_and_size():
  up = features.prosody(_tone(150, 300, 2.0), SR)
  down = features.prosody(_tone(300, 150, 2.0), SR)
  # One octave over two seconds: 6 semitones per second.
  assert 4.5 < up["f0_slope_st_per_s"] < 7.5
  assert -7.5 < down["f0_slope_st_per_s"] < -4.5
  assert up["f0_range_st"] > 8


def test_silence_is_unvoiced():
  p = features.prosody(np.zeros(SR, np.float32), SR)
  assert p["voiced_ratio"] < 0.1 and p["f0_mean_hz"] == 0.0
  v = features.prosody_vector(p)
  assert v.shape == (len(features.PROSODY_FIELDS),) and np.isfinite(v).all()


def test_syllables():
  assert features.count_syllables("table") == 2
  assert features.count_syllables("make the stone") == 3
  assert features.count_syllables("beautiful conversation") == 7


def test_semantic_vector():
  a = features.semantic_vector("The compost in the greenhouse is muddy.")
  b = features.semantic_vector("I put compost into my muddy greenhouse.")
  c = features.semantic_vector("The router dropped packets under latency.")
  assert a.shape == (features.SEMANTIC_DIM,) and a.dtype == np.float32
  assert abs(np.linalg.norm(a) - 1) < 1e-5
  assert a @ b > 0.3 and a @ b > a @ c + 0.2
  np.testing.assert_array_equal(
      a, features.semantic_vector("The compost in the greenhouse is muddy."))
  assert not features.semantic_vector("").any()
  with pytest.raises(ValueError):
    features.semantic_vector("x", dim=0)


def test_semantic_similarity_tracks_shared_words_on_average():
  rng = np.random.default_rng(0)
  letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
  vocab = sorted({"".join(rng.choice(letters, 7)) for _ in range(500)})
  shared, unrelated = [], []
  for _ in range(50):
    base = list(rng.choice(vocab, 8))
    half = base[:4] + list(rng.choice(vocab, 4))
    other = list(rng.choice(vocab, 8))
    v = features.semantic_vector(" ".join(base))
    shared.append(v @ features.semantic_vector(" ".join(half)))
    unrelated.append(v @ features.semantic_vector(" ".join(other)))
  assert np.mean(shared) > 0.35 and abs(np.mean(unrelated)) < 0.1
