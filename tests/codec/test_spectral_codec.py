"""The spectral codec family: iSTFT inversion, streaming, config families."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.codec import spectral
from csm_jax.codec.handle import CodecHandle, padded_frames
from csm_jax.codec.model import Codec, init_codec
from csm_jax.codec.spectral_net import ISTFTDecoder
from csm_jax.config import codec as cfg
from csm_jax.config.codec import codec_config
from flax import nnx


def small_spectral():
  """8 kHz, STFT hop 40, 2 STFT frames per code frame: compiles in seconds."""
  c = codec_config("spectral")
  c.sample_rate = 8000
  c.spectral.update(n_fft=160, hop=40, n_mels=20, width=16, blocks=2,
                    frames_per_code=2)
  c.latent_dim = 16
  c.transformer.update(layers=1, width=16, heads=2, context=6)
  c.rvq.update(levels=3, codebook_size=16, codebook_dim=8)
  c.losses.update(mel_windows=(64, 128), mel_bins=(8, 16),
                  stft_resolutions=((64, 16), (128, 32)))
  c.discriminator.update(n_ffts=(64,))
  c.segment_seconds = 0.1
  cfg.validate(c)
  return c


def _signal(n, seed=0):
  rng = np.random.default_rng(seed)
  t = np.arange(n) / 8000.0
  x = np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
  return (0.3 * x + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("n_fft,hop", [(160, 40), (640, 160), (96, 32)])
def test_istft_head_inverts_a_known_stft(n_fft, hop):
  """Log-magnitude and phase of a causal STFT, fed to the head's synthesis,
  give the signal back, ``n_fft - hop`` samples late."""
  c = small_spectral()
  c.spectral.update(n_fft=n_fft, hop=hop)
  dec = ISTFTDecoder(c, rngs=nnx.Rngs(0))
  x = jnp.asarray(_signal(40 * hop)[None])
  frames, _ = spectral.causal_frames(x, jnp.zeros((1, n_fft - hop)), n_fft,
                                     hop)
  spec = jnp.fft.rfft(frames, axis=-1)
  mag, phase = jnp.abs(spec), jnp.angle(spec)
  y, _ = dec.synthesize(mag * jnp.cos(phase), mag * jnp.sin(phase),
                        jnp.zeros((1, dec.delay)))
  d = n_fft - hop
  assert dec.delay == d
  np.testing.assert_allclose(np.asarray(y[0, d:]), np.asarray(x[0, :-d]),
                             atol=2e-5)
  # Any other lag does not reconstruct.
  assert float(jnp.abs(y[0, d + 1:] - x[0, :-d - 1]).max()) > 0.05


@pytest.mark.parametrize("block", cfg.SPECTRAL_BLOCKS)
def test_spectral_codec_streams_exactly_and_is_causal(block):
  c = small_spectral()
  c.spectral.block = block
  codec = init_codec(c)
  hop = codec.hop
  assert hop == 80 and codec.delay == 120
  x = jnp.asarray(np.stack([_signal(24 * hop, s) for s in (0, 1)]))
  codes = codec.encode(x)
  state, parts = codec.init_encoder_state(2), []
  for a, b in ((0, 5), (5, 6), (6, 24)):
    cc, state = codec.encode_step(x[:, a * hop:b * hop], state)
    parts.append(cc)
  assert np.array_equal(np.asarray(jnp.concatenate(parts, 1)),
                        np.asarray(codes))
  audio = codec.decode(codes)
  state, outs = codec.init_decoder_state(2), []
  for a, b in ((0, 1), (1, 9), (9, 24)):
    y, state = codec.decode_step(codes[:, a:b], state)
    outs.append(y)
  np.testing.assert_allclose(np.asarray(jnp.concatenate(outs, 1)),
                             np.asarray(audio), atol=1e-5)
  # Causal: changing the audio after frame 10 leaves frames <= 10 alone.
  y = x.at[:, 11 * hop:].set(0.0)
  assert np.array_equal(np.asarray(codec.encode(y)[:, :11]),
                        np.asarray(codes[:, :11]))


def test_handle_aligns_decoding_and_streaming_with_the_input():
  """The handle removes the decoder's lag; streamed pushes plus ``flush``
  equal its offline decode."""
  c = small_spectral()
  handle = CodecHandle(init_codec(c))
  codes = handle.encode(_signal(13 * handle.hop))
  full = handle.decode(codes)
  assert full.shape == (13 * handle.hop,)
  raw = np.asarray(handle_raw_decode(handle, codes))
  np.testing.assert_allclose(full, raw[handle.delay:handle.delay + len(full)],
                             atol=1e-5)
  stream = handle.streaming_decoder()
  got = np.concatenate([stream.push(codes[:4]), stream.push(codes[4:13]),
                        stream.flush()])
  np.testing.assert_allclose(got, full, atol=1e-5)


def test_handle_pads_to_few_shapes_and_keeps_every_frame():
  """Clips of any length pad to a bucket times a power of two; the codes
  and audio kept equal the codec's own on the unpadded clip."""
  assert [padded_frames(n, 25) for n in (1, 25, 26, 51, 101, 400)] == \
      [25, 25, 50, 100, 200, 400]
  shapes = {padded_frames(n, 25) for n in range(1, 801)}
  assert shapes == {25, 50, 100, 200, 400, 800}
  c = small_spectral()
  handle = CodecHandle(init_codec(c))
  codec = nnx.merge(handle.graphdef, handle.state)
  x = _signal(7 * handle.hop + 13)
  codes = handle.encode(x)
  own = np.asarray(codec.encode(jnp.asarray(np.pad(
      x, (0, (-len(x)) % handle.hop))[None]), 3))[0]
  np.testing.assert_array_equal(codes, own)
  audio = handle.decode(codes)
  raw = np.asarray(handle_raw_decode(handle, codes))
  np.testing.assert_allclose(audio, raw[handle.delay:handle.delay + len(audio)],
                             atol=1e-5)


def handle_raw_decode(handle, codes):
  codec = nnx.merge(handle.graphdef, handle.state)
  padded = np.concatenate([codes, np.zeros((2, codes.shape[1]), np.int32)])
  return codec.decode(jnp.asarray(padded[None]))[0]


def test_families_do_not_mix():
  c = codec_config("spectral")
  assert cfg.family(c) == "spectral" and cfg.hop_length(c) == 640
  c.channels = (4, 8)
  with pytest.raises(ValueError, match="'channels'.*seanet"):
    cfg.validate(c)
  s = codec_config("debug")
  assert cfg.family(s) == "seanet"  # saved before families: no field
  s.spectral = codec_config("spectral").spectral
  with pytest.raises(ValueError, match="'spectral'"):
    cfg.validate(s)
  with pytest.raises(ValueError, match="'spectral.hop'"):
    c = codec_config("spectral")
    c.spectral.hop = 150
    cfg.validate(c)
  with pytest.raises(ValueError, match="'spectral.block'.*convnext"):
    c = codec_config("spectral")
    c.spectral.block = "resnet"
    cfg.validate(c)


def test_phonetic_head_reads_the_first_level():
  c = small_spectral()
  c.phonetic.update(enabled=True, weight=1.0, classes=5)
  codec = Codec(c, rngs=nnx.Rngs(0))
  x = jnp.asarray(_signal(8 * 80)[None])
  out = codec(x, rng=jax.random.key(0), train=True)
  assert out["phonetic_logits"].shape == (1, 8, 5)

  def head_loss(x):
    return codec(x)["phonetic_logits"].sum()
  # The head's gradient reaches the audio through the encoder
  # (straight-through past the quantizer).
  g = jax.grad(head_loss)(x)
  assert float(jnp.abs(g).sum()) > 0


def test_a_codec_saved_before_the_families_loads_and_runs(tmp_path):
  """A SEANet codec directory whose config.json predates the codec
  families and the k-means options decodes as it did."""
  import json
  import sys
  import os
  sys.path.insert(0, os.path.dirname(__file__))
  from conftest import tiny_config  # pylint: disable=import-outside-toplevel
  from csm_jax.codec.io import load_codec, save_codec
  c = tiny_config()
  codec = init_codec(c)
  save_codec(str(tmp_path), codec, c)
  path = tmp_path / "config.json"
  raw = json.loads(path.read_text())
  for key in ("kmeans_init", "kmeans_init_vectors"):
    raw["rvq"].pop(key)
  assert "family" not in raw and "spectral" not in raw
  path.write_text(json.dumps(raw))
  loaded, lc = load_codec(str(tmp_path))
  assert cfg.family(lc) == "seanet" and loaded.delay == 0
  x = jnp.asarray(_signal(8 * 16)[None])
  np.testing.assert_array_equal(np.asarray(loaded.encode(x)),
                                np.asarray(codec.encode(x)))
  np.testing.assert_allclose(np.asarray(loaded.decode(codec.encode(x))),
                             np.asarray(codec.decode(codec.encode(x))),
                             atol=1e-6)


def test_codec_runs_saved_before_the_block_and_quantize_rate_still_resume():
  """A workdir written before ``spectral.block`` and ``rvq.quantize_rate``
  existed records neither; at their legacy values they are not structure,
  and a different value is."""
  c = codec_config("spectral")
  c.rvq.quantize_rate = 1.0
  d = cfg.structural_dict(c)
  assert "block" not in d["spectral"] and "quantize_rate" not in d["rvq"]
  assert cfg.structural_dict(codec_config("spectral"))["rvq"][
      "quantize_rate"] == 0.5
  c.spectral.block = "convnext"
  assert cfg.structural_dict(c)["spectral"]["block"] == "convnext"
