"""Full codec: shapes, functional API, streaming classes, validation errors."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.codec import api


def test_shapes(codec, clips):
  graphdef, state = codec
  audio = np.stack([c[:300] for c in clips[:2]])  # not a whole frame count
  codes = api.encode(graphdef, state, audio)
  assert codes.shape == (2, 19, 3) and codes.dtype == jnp.int32
  assert int(codes.min()) >= 0 and int(codes.max()) < 16
  out = api.decode(graphdef, state, codes)
  assert out.shape == (2, 19 * 16)
  assert api.encode(graphdef, state, audio, n_levels=2).shape == (2, 19, 2)


def test_any_prefix_decodes(codec, clips):
  graphdef, state = codec
  audio = np.stack([c[:320] for c in clips[:2]])
  codes = api.encode(graphdef, state, audio)
  outs = [np.asarray(api.decode(graphdef, state, codes, n_levels=n))
          for n in (1, 2, 3)]
  for o in outs:
    assert o.shape == (2, 320) and np.all(np.isfinite(o))
  assert not np.allclose(outs[0], outs[2])
  # Passing only the prefix is the same as asking for n_levels.
  np.testing.assert_allclose(api.decode(graphdef, state, codes[..., :2]),
                             outs[1], atol=1e-6)


def test_streaming_equals_offline(codec, clips):
  graphdef, state = codec
  audio = np.stack([c[:600] for c in clips[:2]])
  codes = np.asarray(api.encode(graphdef, state, audio))
  enc = api.StreamingEncoder(graphdef, state, batch_size=2)
  parts = [enc.push(audio[:, i:i + 100]) for i in range(0, 600, 100)]
  parts.append(enc.flush())
  np.testing.assert_array_equal(np.concatenate(parts, 1), codes)

  offline = np.asarray(api.decode(graphdef, state, codes))
  dec = api.StreamingDecoder(graphdef, state, batch_size=2)
  chunks = [dec.push(codes[:, i:i + 5]) for i in range(0, 38, 5)]
  streamed = np.concatenate(chunks, 1)
  assert streamed.shape == offline.shape
  np.testing.assert_allclose(streamed, offline, atol=1e-5)


def test_errors(codec):
  graphdef, state = codec
  good = np.zeros((1, 4, 3), np.int32)
  with pytest.raises(ValueError, match="out of range"):
    api.decode(graphdef, state, good.copy() + 16)
  with pytest.raises(ValueError, match="out of range"):
    api.decode(graphdef, state, good - 1)
  with pytest.raises(ValueError, match="trained with 3"):
    api.decode(graphdef, state, np.zeros((1, 4, 4), np.int32))
  with pytest.raises(ValueError, match="trained with 3"):
    api.decode(graphdef, state, good, n_levels=5)
  with pytest.raises(ValueError, match="hold only 2"):
    api.decode(graphdef, state, good[..., :2], n_levels=3)
  with pytest.raises(ValueError, match="trained with 3"):
    api.encode(graphdef, state, np.zeros((1, 32), np.float32), n_levels=4)
  with pytest.raises(ValueError, match="NaN"):
    api.encode(graphdef, state, np.full((1, 32), np.nan, np.float32))
  with pytest.raises(ValueError, match="batch, samples"):
    api.encode(graphdef, state, np.zeros((32,), np.float32))


def test_save_load_and_cli(codec, tiny, clips, tmp_path, capsys):
  import soundfile as sf
  from csm_jax.codec.__main__ import main
  from csm_jax.codec.io import load_codec, save_codec

  graphdef, state = codec
  save_codec(str(tmp_path / "c"), nnx.merge(graphdef, state), tiny)
  loaded, c2 = load_codec(str(tmp_path / "c"))
  assert c2.ratios == tiny.ratios
  audio = np.stack([clips[0][:320]])
  np.testing.assert_array_equal(
      api.encode(*nnx.split(loaded), audio),
      api.encode(graphdef, state, audio))

  wav = tmp_path / "in.wav"
  sf.write(wav, np.concatenate(clips[:3]), tiny.sample_rate)
  out = tmp_path / "out.wav"
  assert main(["roundtrip", "--codec", str(tmp_path / "c"), str(wav),
               str(out)]) == 0
  assert "bitrate=6000 bps" in capsys.readouterr().out  # 3 * 4 bits * 500 Hz
  assert sf.info(out).frames == 3 * len(clips[0])
  assert main(["evaluate", "--codec", str(tmp_path / "c"), str(wav)]) == 0
  table = capsys.readouterr().out.splitlines()[1:-2]
  assert [int(r.split()[0]) for r in table] == [1, 2, 3]
  assert main(["decode", "--codec", str(tmp_path / "c"), "--levels", "4",
               str(tmp_path / "missing.npy"), str(out)]) == 1


def test_long_inputs_are_chunked_identically(codec, clips):
  graphdef, state = codec
  audio = np.stack([c[:600] for c in clips[:2]])
  whole = api.encode(graphdef, state, audio)
  np.testing.assert_array_equal(
      api.encode(graphdef, state, audio, chunk_frames=16), whole)
  np.testing.assert_allclose(
      api.decode(graphdef, state, whole, chunk_frames=16),
      api.decode(graphdef, state, whole), atol=1e-5)
