"""Codec CLI: checkpoint forms, evaluate report, and every kind of bad input."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
import soundfile as sf
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.__main__ import main
from csm_jax.codec.io import save_codec


@pytest.fixture(scope="module")
def saved(codec, tiny, tmp_path_factory):
  d = tmp_path_factory.mktemp("cli") / "codec"
  save_codec(str(d), nnx.merge(*codec), tiny)
  return str(d)


@pytest.fixture(scope="module")
def speech(clips):
  return np.concatenate(clips[:3])  # 0.36 s at 8 kHz


def _wav(tmp_path, name, data, sr, subtype=None):
  path = str(tmp_path / name)
  sf.write(path, data, sr, subtype=subtype)
  return path


def _encode(saved, path, tmp_path, capsys, *extra, flag="--checkpoint"):
  out = str(tmp_path / "codes.npy")
  rc = main(["encode", flag, saved, *extra, path, out])
  captured = capsys.readouterr()
  return rc, (np.load(out) if rc == 0 else None), captured.err


def test_checkpoint_forms(codec, tiny, saved, speech, tmp_path, capsys):
  """A codec dir, a CSM workdir (codec/export) and a codec trainer workdir
  restored from its latest Orbax checkpoint give the same codes."""
  from csm_jax.training.tasks.codec import CodecTask
  from csm_jax.config.presets import codec_training
  from csm_jax.store.run_config import save_run_config
  from csm_jax.store import checkpoint as ckpt
  from csm_jax.training.state import StateBuilder

  wav = _wav(tmp_path, "a.wav", speech, tiny.sample_rate)
  _, ref, _ = _encode(saved, wav, tmp_path, capsys)
  csm = tmp_path / "csm_run"
  shutil.copytree(saved, csm / "codec" / "export")
  # --codec is kept as an alias of --checkpoint.
  _, via_csm, _ = _encode(str(csm), wav, tmp_path, capsys, flag="--codec")
  np.testing.assert_array_equal(via_csm, ref)

  # A trainer workdir as the trainer leaves it: run_config.json + checkpoints.
  config = codec_training(tiny, steps=1)
  task = CodecTask(config)
  # One jitted init (eager construction compiles every initializer).
  builder = StateBuilder.create(task, config)
  builder.build_abstract()
  state = jax.jit(builder.init_fn)(np.uint32(3))
  run = str(tmp_path / "codec_run")
  save_run_config(run, config)
  manager = ckpt.make_manager(run, keep=2, async_save=False)
  ckpt.save(manager, 1, state, None, force=True)
  manager.close()
  rc, codes, _ = _encode(run, wav, tmp_path, capsys, "--levels", "2")
  expect = builder.merge(builder.graphdef, state["params"],
                         state["extra"]).codec
  np.testing.assert_array_equal(
      codes, np.asarray(api.encode(*nnx.split(expect),
                                   sf.read(wav, dtype="float32")[0][None],
                                   2))[0])

  assert main(["encode", "--checkpoint", str(tmp_path), wav,
               str(tmp_path / "x.npy")]) == 1
  assert "holds no codec" in capsys.readouterr().err
  assert main(["encode", "--checkpoint", str(tmp_path / "nope"), wav,
               str(tmp_path / "x.npy")]) == 1


def test_evaluate_writes_report_and_plot(tiny, saved, speech, tmp_path,
                                         capsys):
  a = _wav(tmp_path, "a.wav", speech, tiny.sample_rate)
  b = _wav(tmp_path, "b.wav", speech[::-1].copy(), tiny.sample_rate)
  assert main(["evaluate", "--checkpoint", saved, a, b]) == 0
  out = tmp_path / "a_codec_report"  # default: next to the first file
  printed = capsys.readouterr().out
  assert str(out) in printed and "codebooks" in printed
  rep = json.loads((out / "report.json").read_text())
  assert [r["levels"] for r in rep["results"]] == [1, 2, 3]
  assert [r["bitrate_bps"] for r in rep["results"]] == [2000, 4000, 6000]
  for r in rep["results"]:
    for k in ("mel_distance", "stft_distance", "si_sdr_db"):
      assert np.isfinite(r[k])
    assert len(r["lag_samples"]) == 2
  assert len(rep["files"]) == 2
  assert [b["level"] for b in rep["codebooks"]] == [0, 1, 2]
  for b in rep["codebooks"]:
    assert 0 < b["usage"] <= 1 and 1 <= b["perplexity"] <= 16
  assert (out / "mel.png").read_bytes()[:4] == b"\x89PNG"
  assert main(["evaluate", "--checkpoint", saved, "--levels", "2",
               "--out_dir", str(tmp_path / "r"), a]) == 0
  rep = json.loads((tmp_path / "r" / "report.json").read_text())
  assert [r["levels"] for r in rep["results"]] == [1, 2]


@pytest.mark.parametrize("kind,reason", [
    ("zero_bytes", "empty"), ("zero_frames", "empty"),
    ("text", "corrupt"), ("nan", "non_finite"), ("inf", "non_finite")])
def test_unusable_files_are_named_errors(kind, reason, saved, tmp_path,
                                         capsys):
  path = str(tmp_path / "bad.wav")
  if kind == "zero_bytes":
    open(path, "wb").close()
  elif kind == "zero_frames":
    sf.write(path, np.zeros((0,), np.float32), 8000)
  elif kind == "text":
    with open(path, "w") as f:
      f.write("this is not audio\n" * 50)
  else:
    x = np.full(800, 0.1, np.float32)
    x[100] = np.nan if kind == "nan" else np.inf
    sf.write(path, x, 8000, subtype="FLOAT")
  for cmd in ("encode", "roundtrip", "evaluate"):
    args = [path] if cmd == "evaluate" else [path, str(tmp_path / "o")]
    assert main([cmd, "--checkpoint", saved, *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: audio is {reason}"), err


def test_short_silent_and_clipped_audio(codec, tiny, saved, speech, tmp_path,
                                        capsys):
  sr = tiny.sample_rate
  # Shorter than one 16-sample frame: padded, one frame of codes.
  rc, codes, _ = _encode(saved, _wav(tmp_path, "s.wav", speech[:5], sr),
                         tmp_path, capsys)
  assert rc == 0 and codes.shape == (1, 3)
  out = str(tmp_path / "s_out.wav")
  assert main(["roundtrip", "--checkpoint", saved,
               str(tmp_path / "s.wav"), out]) == 0
  assert sf.info(out).frames == 5
  # Silence encodes (it has codes too) but cannot be scored.
  silent = _wav(tmp_path, "z.wav", np.zeros(400, np.float32), sr)
  rc, codes, err = _encode(saved, silent, tmp_path, capsys)
  assert rc == 0 and codes.shape == (25, 3) and "silent" in err
  assert main(["roundtrip", "--checkpoint", saved, silent, out]) == 0
  assert "no metrics" in capsys.readouterr().out
  assert main(["evaluate", "--checkpoint", saved, silent]) == 1
  assert "audio is silent" in capsys.readouterr().err
  # Clipped audio is encoded as it is, with a warning.
  clipped = np.clip(10 * speech, -1, 1)
  rc, codes, err = _encode(
      saved, _wav(tmp_path, "c.wav", clipped, sr, subtype="FLOAT"), tmp_path,
      capsys)
  assert rc == 0 and "clipped" in err
  np.testing.assert_array_equal(
      codes, np.asarray(api.encode(*codec, clipped[None]))[0])


def test_channels_and_sample_rates(tiny, saved, speech, tmp_path, capsys):
  sr = tiny.sample_rate
  _, mono, _ = _encode(saved, _wav(tmp_path, "m.wav", speech, sr), tmp_path,
                       capsys)
  # Stereo/multichannel are averaged to mono before encoding.
  multi = np.stack([speech, speech, speech, speech], axis=1)
  _, codes, _ = _encode(saved, _wav(tmp_path, "st.wav", multi, sr),
                        tmp_path, capsys)
  np.testing.assert_array_equal(codes, mono)
  # Any rate is resampled to the codec's 8 kHz: 0.5 s -> 250 frames of 16.
  t = np.arange(0, 0.5, 1 / 48_000)
  tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
  for rate in (8_000, 16_000, 44_100, 48_000):
    x = tone[::48_000 // rate] if 48_000 % rate == 0 else np.interp(
        np.arange(0, 0.5, 1 / rate), t, tone).astype(np.float32)
    rc, codes, _ = _encode(saved, _wav(tmp_path, f"r{rate}.wav", x, rate),
                           tmp_path, capsys)
    assert rc == 0 and codes.shape == (250, 3), rate


def test_bad_codes_for_decode(saved, tmp_path, capsys):
  out = str(tmp_path / "o.wav")

  def decode(codes, *extra):
    path = str(tmp_path / "c.npy")
    np.save(path, codes)
    rc = main(["decode", "--checkpoint", saved, *extra, path, out])
    return rc, capsys.readouterr().err

  assert decode(np.zeros((4, 3), np.int32))[0] == 0
  assert sf.info(out).frames == 4 * 16
  assert "out of range" in decode(np.full((4, 3), 16, np.int32))[1]
  assert "out of range" in decode(np.full((4, 3), -1, np.int64))[1]
  assert "must be integers" in decode(np.zeros((4, 3), np.float32))[1]
  assert "trained with 3" in decode(np.zeros((4, 5), np.int32))[1]
  assert "trained with 3" in decode(np.zeros((4, 3), np.int32),
                                    "--levels", "4")[1]
  assert "at least one frame" in decode(np.zeros((0, 3), np.int32))[1]
  junk = tmp_path / "junk.npy"
  junk.write_text("not numpy")
  assert main(["decode", "--checkpoint", saved, str(junk), out]) == 1
  assert "not a .npy array" in capsys.readouterr().err


def test_long_audio_is_chunked(tiny, saved, speech, tmp_path, capsys,
                               monkeypatch):
  """A 20 s round trip (many chunks): offline (whole-input) calls never see
  more than one chunk, so memory is bounded by the chunk, not the file,
  however long it is."""
  sr = tiny.sample_rate
  long = np.tile(speech, int(20 * sr / len(speech)) + 1)[:20 * sr]
  path = _wav(tmp_path, "long.wav", long, sr)
  seen = []
  for name in ("_encode", "_decode", "_encode_step", "_decode_step"):
    fn = getattr(api, name)

    def spy(*args, _fn=fn, _name=name):
      x = args[3] if _name.endswith("_step") else args[2]
      seen.append((_name, x.shape[1]))
      return _fn(*args)
    monkeypatch.setattr(api, name, spy)
  codes = str(tmp_path / "long.npy")
  assert main(["encode", "--checkpoint", saved, path, codes]) == 0
  out = str(tmp_path / "long_out.wav")
  assert main(["decode", "--checkpoint", saved, codes, out]) == 0
  assert sf.info(out).frames == len(long)
  assert {n for n, _ in seen} == {"_encode_step", "_decode_step"}
  assert max(s for n, s in seen if n == "_encode_step") == 1024 * 16
  assert max(s for n, s in seen if n == "_decode_step") == 1024

