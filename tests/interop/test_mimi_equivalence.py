"""Converted Kyutai Mimi == moshi's ``get_mimi(None)``, in float32.

The reference has Mimi's real shape and random weights (random codebooks
at the scale of its latent); it is saved in moshi's naming, converted with
``python -m csm_jax.convert mimi``'s library function, loaded as any codec
directory is, and compared on the same waveform: the same 32 codes on
every frame (frame 0 included, which the replicate padding decides) and
decoded audio within 1e-4 relative, offline and streamed.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.io import load_codec
from csm_jax.interop.convert import mimi_config

TOL = 1e-4


def rel(ours, theirs) -> float:
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


@pytest.fixture(scope="module")
def ours(mimi_dir):
  return load_codec(str(mimi_dir))


@pytest.fixture(scope="module")
def reference_out(mimi_ref, mimi_audio):
  x = torch.as_tensor(mimi_audio)[:, None]
  with torch.no_grad():
    latent = mimi_ref._encode_to_unquantized_latent(x)  # pylint: disable=protected-access
    codes = mimi_ref.encode(x)
    audio = mimi_ref.decode(codes)
  return {"latent": latent.numpy().transpose(0, 2, 1),
          "codes": codes.numpy().transpose(0, 2, 1),
          "audio": audio.numpy()[:, 0]}


def test_config_is_mimi(ours):
  _, c = ours
  want = mimi_config()
  assert c.to_dict() == want.to_dict()
  assert c.downsample_pad == "replicate" and c.upsample_depthwise
  assert c.transformer.exact_gelu and c.semantic.enabled


def test_same_codes_and_audio(ours, reference_out, mimi_audio):
  codec, _ = ours
  x = jnp.asarray(mimi_audio)
  state = codec.init_encoder_state(1)
  latent, _ = codec.encode_latent_step(x, state)
  assert rel(latent, reference_out["latent"]) < TOL
  codes = np.asarray(codec.encode(x))
  ref_codes = reference_out["codes"]
  assert codes.shape == ref_codes.shape == (1, 13, 32)
  assert len(np.unique(ref_codes)) > 50  # a test of something
  np.testing.assert_array_equal(codes, ref_codes)
  audio = np.asarray(codec.decode(jnp.asarray(ref_codes, jnp.int32)))
  assert audio.shape == reference_out["audio"].shape
  assert rel(audio, reference_out["audio"]) < TOL


def test_streamed_equals_reference(ours, reference_out, mimi_audio):
  """Frame by frame through the streaming encoder (the replicate pad's
  "first chunk" flag rides in the stream state)."""
  codec, _ = ours
  graphdef, state = nnx.split(codec)
  hop = 1920
  enc = api.StreamingEncoder(graphdef, state)
  codes = np.concatenate(
      [np.asarray(enc.push(mimi_audio[:, i:i + hop]))
       for i in range(0, mimi_audio.shape[1], hop)], axis=1)
  np.testing.assert_array_equal(codes, reference_out["codes"])
