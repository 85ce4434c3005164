"""Speakers are acoustically distinguishable; emotions move F0, rate and
level in their intended directions."""

import numpy as np
import pytest

from csm_jax.audio import librosa_safe
from csm_jax.data import features
from csm_jax.data.synthetic import espeak
from csm_jax.data.synthetic import text_gen
from csm_jax.data.synthetic import voices

SR = 16000


def _sentences(n, seed=0):
  out = []
  s = seed
  while len(out) < n:
    for t in text_gen.sample_dialogue(s, voices.ARC_NAMES[s % 4],
                                      ["neutral"] * 4):
      if 6 <= len(t.split()) <= 20:
        out.append(t)
    s += 1
  return out[:n]


def _speaker_features(x):
  """MFCC mean/std + F0 median and spread (yin: voicing not needed here)."""
  librosa = librosa_safe.librosa()
  m = librosa.feature.mfcc(y=x, sr=SR, n_mfcc=20)
  f0 = librosa.yin(x, fmin=50, fmax=600, sr=SR, frame_length=1024,
                   hop_length=320)
  rms = librosa.feature.rms(y=x, frame_length=1024, hop_length=320)[0]
  st = 12 * np.log2(f0[rms > 0.05 * rms.max()] / 100)
  return np.concatenate([m.mean(1), m.std(1),
                         [np.median(st), np.percentile(st, 90)
                          - np.percentile(st, 10)]])


def test_speakers_distinguishable_nearest_centroid():
  n_train, n_test = 6, 3
  sents = _sentences(n_train + n_test, seed=11)
  rng = np.random.default_rng(0)
  X, y = [], []
  for spk in voices.SPEAKERS:
    for text in sents:
      # Emotions vary within a speaker, so the classifier must see identity
      # through the prosody offsets.
      emo = voices.EMOTION_NAMES[int(rng.integers(len(voices.EMOTIONS)))]
      x = espeak.synthesize(text, spk.voice, voices.prosody_for(spk, emo), SR)
      X.append(_speaker_features(x))
      y.append(spk.id)
  X, y = np.array(X), np.array(y)
  test = np.tile(np.arange(len(sents)) >= n_train, len(voices.SPEAKERS))
  mu, sd = X[~test].mean(0), X[~test].std(0) + 1e-6
  Z = (X - mu) / sd
  centroids = np.stack([Z[~test & (y == k)].mean(0)
                        for k in range(len(voices.SPEAKERS))])
  d = ((Z[test][:, None, :] - centroids[None]) ** 2).sum(-1)
  acc = float((d.argmin(1) == y[test]).mean())
  # Chance is 1/10.
  assert acc >= 0.8, acc


@pytest.fixture(scope="module")
def emotion_table():
  sents = _sentences(4, seed=40)
  table = {}
  for emo in ("neutral", "happy", "sad", "angry", "calm"):
    rows = []
    for spk in (voices.SPEAKERS[1], voices.SPEAKERS[0]):
      for text in sents:
        x = espeak.synthesize(text, spk.voice, voices.prosody_for(spk, emo),
                              SR)
        p = features.prosody(x, SR, text)
        rows.append((p["f0_mean_st"], p["syllables_per_s"], p["rms_db"]))
    table[emo] = np.mean(rows, axis=0)
  return table


def test_emotion_f0_direction(emotion_table):
  f0 = {k: v[0] for k, v in emotion_table.items()}
  assert f0["happy"] > f0["neutral"] + 1.0
  assert f0["angry"] > f0["neutral"] + 0.5
  assert f0["sad"] < f0["neutral"] - 1.0
  assert f0["calm"] < f0["neutral"]


def test_emotion_rate_and_level_direction(emotion_table):
  rate = {k: v[1] for k, v in emotion_table.items()}
  level = {k: v[2] for k, v in emotion_table.items()}
  assert rate["angry"] > rate["happy"] > rate["neutral"] > rate["calm"] > \
      rate["sad"]
  assert level["angry"] > level["neutral"] > level["sad"]


def test_prosody_for_clamps_and_validates():
  p = voices.prosody_for(voices.SPEAKERS[6], "happy")
  assert 0 <= p.pitch <= 100 and 0 <= p.range <= 100
  with pytest.raises(ValueError, match="unknown emotion"):
    voices.prosody_for(voices.SPEAKERS[0], "bored")
  with pytest.raises(ValueError, match="out of range"):
    voices.speaker(99)


def test_speaker_settings_pairwise_apart():
  s = voices.SPEAKERS
  assert len(s) >= 8 and len({x.voice for x in s}) == len(s)
  for i, a in enumerate(s):
    for b in s[i + 1:]:
      apart = ((a.voice.split("+")[1] != b.voice.split("+")[1])
               + (abs(a.pitch - b.pitch) >= 8) + (abs(a.range - b.range) >= 10)
               + (abs(a.rate - b.rate) >= 15))
      assert apart >= 2, (a.name, b.name)
