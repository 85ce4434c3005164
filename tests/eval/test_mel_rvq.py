"""The codec floor: k-means mel RVQ fitted on audio, Griffin-Lim out."""

import numpy as np

from csm_jax.eval import mel_rvq


def _clips(n=4, seconds=1.0, sr=16000):
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * sr)) / sr
  return [(0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
           * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))
           + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
          for _ in range(n)]


def test_fit_encode_decode(tmp_path):
  clips = _clips()
  model = mel_rvq.fit(clips, levels=3, codebook_size=8, stack=4)
  assert model.codebooks.shape == (3, 8, 4 * mel_rvq.N_MELS)
  assert model.hop == 640 and mel_rvq.stack_for(16000, 25.0) == 4
  codes = model.encode(clips[0])
  assert codes.shape == (-(-101 // 4), 3) and codes.dtype == np.int32
  assert codes.min() >= 0 and codes.max() < 8
  # Each level lowers the error of the stacked log-mel vectors.
  target = model._vectors(clips[0])  # pylint: disable=protected-access
  errors = [np.mean((target - sum(model.codebooks[i][codes[:, i]]
                                  for i in range(n))) ** 2)
            for n in (1, 2, 3)]
  assert errors[0] > errors[1] > errors[2]
  audio = model.decode(codes)
  assert audio.dtype == np.float32 and abs(len(audio) - 16000) <= 640
  np.testing.assert_array_equal(audio, model.decode(codes))  # seeded
  cached = mel_rvq.cached_fit(str(tmp_path), lambda: clips, 3, 8)
  again = mel_rvq.cached_fit(str(tmp_path), lambda: [], 3, 8)
  np.testing.assert_array_equal(cached.codebooks, again.codebooks)
