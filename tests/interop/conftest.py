"""Shared references of the interop tests: converted once per session.

Every test here compares against the PyTorch references, so torch,
torchtune and moshi (the ``interop`` test extra, installed by .ci/run) must
be present: a missing one fails the test run rather than skipping it.
"""

import numpy as np
import pytest

from tests.interop import references as refs

SR = 24_000


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
  """(1, T) float32: a gliding, amplitude-modulated tone plus noise."""
  t = np.arange(int(round(seconds * SR))) / SR
  f = 180 + 60 * np.sin(2 * np.pi * 0.7 * t)
  x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR) * (0.6 + 0.4 * np.sin(
      2 * np.pi * 3 * t))
  x += 0.03 * np.random.default_rng(seed).standard_normal(t.size)
  return x.astype(np.float32)[None]


@pytest.fixture(scope="session")
def mimi_audio():
  return speech_like(13 * 0.08)  # 13 frames of 80 ms


@pytest.fixture(scope="session")
def mimi_ref(mimi_audio):
  return refs.mimi_reference(calibration=mimi_audio)


@pytest.fixture(scope="session")
def mimi_file(mimi_ref, tmp_path_factory):
  path = tmp_path_factory.mktemp("mimi_ref") / "mimi.safetensors"
  refs.save_safetensors(mimi_ref, path)
  return path


@pytest.fixture(scope="session")
def mimi_dir(mimi_file, tmp_path_factory):
  from csm_jax.interop.convert import convert_mimi
  out = tmp_path_factory.mktemp("mimi_ours") / "codec"
  convert_mimi(str(mimi_file), str(out))
  return out


@pytest.fixture(scope="session")
def csm_ref():
  return refs.csm_reference()


@pytest.fixture(scope="session")
def csm_file(csm_ref, tmp_path_factory):
  path = tmp_path_factory.mktemp("csm_ref") / "model.safetensors"
  refs.save_safetensors(csm_ref, path)
  return path


def small_csm_config():
  """Our config of the small reference CSM (csm_1b with its shapes)."""
  from csm_jax.interop.convert import csm_config
  c = csm_config()
  m = c.model
  for name, shape in (("backbone", refs.BACKBONE), ("decoder", refs.DECODER)):
    t = m[name]
    t.width, t.depth, t.heads, t.kv_heads, t.mlp = shape
  m.max_seq_len = m.text_window = refs.MAX_SEQ
  c.data.seq_len = 128
  c.data.batch_size = 2
  return c


@pytest.fixture(scope="session")
def tokenizer_json(tmp_path_factory):
  from tests.interop.tokenizer_file import write_llama3_like_tokenizer
  return write_llama3_like_tokenizer(
      tmp_path_factory.mktemp("tok") / "tokenizer.json")
