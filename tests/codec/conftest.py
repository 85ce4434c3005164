"""Shared fixtures for the codec tests: a tiny config, synthetic clips and a
tiny codec whose codebooks are initialised."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.config.codec import codec_config
from csm_jax.codec.model import Codec


def tiny_config():
  """8 kHz, hop 16, 3 levels x 16 codes: compiles in seconds on a CPU."""
  c = codec_config("debug")
  c.sample_rate = 8000
  c.channels = (4, 8, 8)
  c.ratios = (4, 2)
  c.downsample = 2
  c.latent_dim = 8
  c.transformer.update(layers=1, width=16, heads=2, mlp_ratio=2, context=4,
                       layer_scale=0.1)
  c.rvq.update(levels=3, codebook_size=16, codebook_dim=4,
               dead_code_threshold=0.5, kmeans_iters=3)
  c.losses.update(mel_windows=(64, 128), mel_bins=(8, 16),
                  stft_resolutions=((64, 16), (128, 32)),
                  adversarial_warmup_steps=100)
  c.discriminator.update(n_ffts=(64,), channels=4, layers=1)
  c.segment_seconds = 0.04  # 320 samples = 20 frames
  return c


def synthetic_clip(seed: int, seconds: float, sample_rate: int) -> np.ndarray:
  """Harmonic tone with vibrato plus a few noise bursts (test fixture only)."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  f0 = rng.uniform(110, 330) * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
  phase = 2 * np.pi * np.cumsum(f0) / sample_rate
  x = sum(np.sin(k * phase) / k for k in range(1, 5))
  x *= 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(1, 3) * t) ** 2
  for _ in range(3):
    start = rng.integers(0, max(1, len(t) - sample_rate // 20))
    n = sample_rate // 40
    x[start:start + n] += 0.3 * rng.standard_normal(len(x[start:start + n]))
  return (0.3 * x / np.max(np.abs(x))).astype(np.float32)


@pytest.fixture(scope="session")
def tiny():
  return tiny_config()


@pytest.fixture(scope="session")
def clips(tiny):
  return [synthetic_clip(i, 0.12, tiny.sample_rate) for i in range(6)]


@pytest.fixture(scope="session")
def codec(tiny, clips):
  model = Codec(tiny, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)

  @jax.jit
  def train(state, audio, rng):
    m = nnx.merge(graphdef, state)
    m(audio, rng=rng, train=True)
    return nnx.state(m)

  # One training pass initialises the codebooks with k-means.
  audio = jnp.asarray(np.stack([c[:320] for c in clips]))
  state = train(state, audio, jax.random.key(0))
  return graphdef, state
