"""Prosody controls: sketches, emotions, reference wavs, pace, and bad input.

Every bad input must fail with a ``ProsodyError`` (a ``UserError``) that
names the file or the field, before any generation; the command line turns
it into one line.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from csm_jax.audio.io import write_wav
from csm_jax.config.errors import UserError
from csm_jax.data import prosody_tokens as pt
from csm_jax.inference import cli
from csm_jax.inference.generator import Sampling
from csm_jax.inference.prosody_control import (Sketch, parse_sketch,
                                               read_sketch, sketch_from_wav)
from tests.prosody import helpers as H


@pytest.fixture(scope="module")
def bins():
  c = H.prosody_config()
  rng = np.random.default_rng(0)
  codec = H.ToneCodec()
  contours = []
  for _ in range(12):
    x = H.utterance_codes(rng, 30)
    contours.append(pt.frame_contour(codec.decode(x), H.SR, H.FRAME_RATE,
                                     len(x)))
  return pt.ProsodyBins(c.model.prosody,
                        H.fitted_stats(c, contours, [0] * 12))


def _write(tmp_path, name, obj):
  p = tmp_path / name
  p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
  return str(p)


def test_a_sketch_file_becomes_tokens_at_the_codec_rate(bins, tmp_path):
  hz = [150, 160, None, 0, 200, 220, 240, 260]
  path = _write(tmp_path, "s.json", {"frame_rate": 50, "f0_hz": hz,
                                     "energy_db": [-20] * 8})
  sk = read_sketch(path, bins, 0, H.FRAME_RATE)
  # 8 frames at 50 Hz are 4 codec frames at 25 Hz.
  assert len(sk) == 4 and len(sk.energy) == 4
  assert sk.f0[1] == bins.unvoiced           # a null/0 frame is unvoiced
  assert sk.f0[3] > sk.f0[0]                 # the contour rises
  z = parse_sketch({"f0_z": [-2, 0, 2]}, bins, 0, H.FRAME_RATE)
  assert list(z.f0) == list(bins.f0_ids_of_z(np.asarray([-2, 0, 2])))
  assert z.energy is None
  ids = parse_sketch({"f0_bin": [0, 3, None], "energy_bin": [1, 2, 3]}, bins,
                     0, H.FRAME_RATE)
  assert list(ids.f0) == [0, 3, bins.unvoiced]


@pytest.mark.parametrize("raw, field", [
    ([1, 2, 3], "expected a JSON object"),
    ({"f0": [100]}, "unknown field"),
    ({"frame_rate": 25}, "no contour"),
    ({"f0_hz": []}, "'f0_hz': must be a non-empty list"),
    ({"f0_hz": [120, "high"]}, r"'f0_hz'\[1\]"),
    ({"f0_hz": [120, 5000]}, r"'f0_hz'\[1\] = 5000 Hz"),
    ({"f0_hz": [120], "f0_z": [0]}, "at most one"),
    ({"f0_hz": [120, 130, 140], "energy_db": [-20, -20]},
     "F0 contour has 3 frames but the energy contour 2"),
    ({"energy_db": [-20, 10]}, "'energy_db' values are levels"),
    ({"f0_bin": [0, 99]}, "'f0_bin' values are integers"),
    ({"energy_bin": [0.5]}, "'energy_bin' values are integers"),
    ({"f0_hz": [120], "frame_rate": 0}, "'frame_rate'"),
])
def test_a_bad_sketch_names_its_file_and_field(bins, tmp_path, raw, field):
  path = _write(tmp_path, "bad.json", raw)
  with pytest.raises(pt.ProsodyError, match=field) as e:
    read_sketch(path, bins, 0, H.FRAME_RATE)
  assert path in str(e.value)
  assert isinstance(e.value, UserError)


def test_unreadable_sketch_and_reference_files(bins, tmp_path):
  broken = _write(tmp_path, "broken.json", '{"f0_hz": [1, 2')
  with pytest.raises(UserError, match="broken.json.*not valid JSON"):
    cli.read_prosody_flags(prosody=broken)
  with pytest.raises(pt.ProsodyError, match="no such sketch file"):
    cli.read_prosody_flags(prosody=str(tmp_path / "missing.json"))
  not_wav = tmp_path / "ref.wav"
  not_wav.write_bytes(b"RIFF this is not audio at all" * 10)
  with pytest.raises(pt.ProsodyError,
                     match=r"--prosody_from=.*ref.wav: cannot be read"):
    cli.read_prosody_flags(prosody_from=str(not_wav))
  with pytest.raises(pt.ProsodyError, match="no such audio file"):
    cli.read_prosody_flags(prosody_from=str(tmp_path / "nope.wav"))
  with pytest.raises(pt.ProsodyError, match="not both"):
    cli.read_prosody_flags(prosody=broken, prosody_from=str(not_wav))
  with pytest.raises(pt.ProsodyError, match="--pace=9"):
    cli.read_prosody_flags(pace=9.0)
  with pytest.raises(pt.ProsodyError, match="--intensity=1.5"):
    cli.read_prosody_flags(emotion="calm", intensity=1.5)
  # A silent reference cannot be read; a noise one has no pitch to follow.
  quiet = tmp_path / "quiet.wav"
  write_wav(str(quiet), np.zeros(H.SR, np.float32), H.SR)
  with pytest.raises(pt.ProsodyError, match="quiet.wav.*silent"):
    sketch_from_wav(str(quiet), bins, H.SR, H.FRAME_RATE)
  noise = tmp_path / "noise.wav"
  write_wav(str(noise), 0.1 * np.random.default_rng(0).standard_normal(
      H.SR).astype(np.float32), H.SR)
  with pytest.raises(pt.ProsodyError, match="noise.wav: fewer than 3 voiced "
                                            "frames"):
    sketch_from_wav(str(noise), bins, H.SR, H.FRAME_RATE)


def test_unknown_emotion_lists_the_known_ones(bins):
  with pytest.raises(pt.ProsodyError,
                     match="--emotion=furious: unknown emotion; the model "
                           "knows calm, lively"):
    bins.emotion_index("furious")
  assert bins.style_id(bins.emotion_index("lively"),
                       bins.intensity_bin(0.9)) == 3
  assert bins.style_of(3) == ("lively", 1)
  assert bins.style_of(bins.unknown_style) is None


def _gen(bins, max_len=48):
  import ml_collections
  return SimpleNamespace(bins=bins, frame_seconds=0.04, max_len=max_len,
                         cache_len=max_len,
                         config=ml_collections.ConfigDict(
                             {"model": {"text_stream": "prefix"}}),
                         tokenizer=H.CharTokenizer(),
                         codec=SimpleNamespace(frame_rate=H.FRAME_RATE,
                                               sample_rate=H.SR))


def test_a_sketch_longer_than_the_request_allows_is_refused(bins, tmp_path):
  flags = cli.ProsodyFlags(sketch_path="long.json",
                           sketch={"f0_z": [0.0] * 40})
  with pytest.raises(pt.ProsodyError,
                     match=r"long.json: the sketch lasts 40 frames \(1.60 s\)"
                           r" but --max_seconds=1 allows 25"):
    cli.control_for(_gen(bins), flags, 0, Sampling(max_seconds=1.0), "hi")
  # Within --max_seconds but not beside the text in the model's cache.
  with pytest.raises(pt.ProsodyError, match="holds 48 rows and the text "
                                            "takes 11"):
    cli.control_for(_gen(bins), flags, 0, Sampling(max_seconds=5.0),
                    "say it now")
  # Faster pace: 40 frames at pace 2 are 20, which fit.
  ctl = cli.control_for(_gen(bins), flags, 0,
                        Sampling(max_seconds=1.0, pace=2.0), "hi")
  assert len(ctl.sketch.paced(2.0)) == 20
  with pytest.raises(pt.ProsodyError, match="--style=99"):
    cli.control_for(_gen(bins), cli.ProsodyFlags(style=99), 0)
  with pytest.raises(pt.ProsodyError, match="need a model trained with the "
                                            "prosody stream"):
    cli.control_for(_gen(None), cli.ProsodyFlags(emotion="calm"), 0)


def test_pace_resamples_a_sketch_in_time():
  sk = Sketch(np.arange(10, dtype=np.int32), None)
  assert len(sk.paced(2.0)) == 5 and list(sk.paced(2.0).f0) == [0, 2, 4, 6, 8]
  assert len(sk.paced(0.5)) == 20
  assert sk.paced(1.0) is sk


def test_the_command_line_prints_one_line_naming_the_sketch(tmp_path):
  bad = _write(tmp_path, "sketch.json", {"f0_hz": [100, 120],
                                         "energy_db": [-20]})
  # The sketch is checked before the checkpoint is read, so a bad one
  # fails fast, here even with a checkpoint that does not exist.
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run(
      [sys.executable, "-m", "csm_jax.generate", "--checkpoint=/nonexistent",
       "--text=hi", f"--prosody={bad}"], capture_output=True, text=True,
      env=env, timeout=300, check=False)
  assert r.returncode == 1, r.stderr
  lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(lines) == 1, r.stderr
  assert "sketch.json" in lines[0] and "energy contour 1" in lines[0]
  assert "Traceback" not in r.stderr
