"""Plugged-in instruments: Whisper, CTC and x-vector model directories read
offline, Resemblyzer's shipped encoder on eSpeak voices, and every bad
input refused in one line (the directory missing, of the wrong kind, its
config unreadable, a package missing), from the library and the command
line. The quick suite scored with them is in test_instruments_cache."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from csm_jax.config.errors import UserError, one_line
from csm_jax.eval.instruments import ModelDirError, model_dirs, plugged
from csm_jax.eval.instruments import transformers_models as tm
from tests.eval import tiny_hf_models as hf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@pytest.fixture(scope="module")
def model_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("plugged_models")
  hf.whisper_dir(str(root / "whisper"))
  hf.ctc_dir(str(root / "ctc"))
  hf.xvector_dir(str(root / "xvector"))
  return root


def _one_line_error(excinfo, *needles):
  e = excinfo.value
  assert isinstance(e, UserError)
  line = one_line(e)
  assert "\n" not in str(e) and line == str(e)
  for needle in needles:
    assert needle in line, line
  return line


# -- the models, loaded from their directories --------------------------------

def test_whisper_directory_transcribes_offline_and_normalized(model_root):
  d = model_dirs.inspect(str(model_root / "whisper"), "--recognizer")
  assert d.kind == model_dirs.WHISPER
  rec = plugged.load_plugged({"recognizer": d})["recognizer"]
  assert isinstance(rec, tm.WhisperRecognizer)
  # 24 kHz in (the feature extractor takes only 16 kHz), an utterance over
  # Whisper's 30 s window (two pieces, two transcripts joined), and nothing.
  out = rec.transcribe([hf.tone(1.0, 24000), hf.tone(40.0, 24000),
                        np.zeros(0, np.float32),
                        (hf.tone(0.5, 24000) * 32767).astype(np.int16)], 24000)
  assert out == ["hello world", "hello world hello world", "",
                 "hello world"]
  assert "whisper" in rec.describe() and str(model_root) in rec.describe()


def test_ctc_directory_transcribes_with_its_processor(model_root):
  d = model_dirs.inspect(str(model_root / "ctc"), "--recognizer")
  assert d.kind == model_dirs.CTC
  rec = plugged.load_plugged({"recognizer": d})["recognizer"]
  assert isinstance(rec, tm.CTCRecognizer)
  # Every frame says "A": CTC collapses the repeats to one letter.
  assert rec.transcribe([hf.tone(1.0, 8000), np.zeros(0, np.float32)],
                        8000) == [hf.CTC_LETTER.lower(), ""]


def test_xvector_directory_gives_unit_embeddings(model_root):
  d = model_dirs.inspect(str(model_root / "xvector"), "--speaker_model")
  enc = plugged.load_plugged({"speaker": d})["speaker"]
  clips = [hf.tone(1.0, 16000), hf.tone(1.0, 16000, 440.0),
           np.zeros(0, np.float32)]
  emb = enc.speaker_embeddings(clips, 16000)
  assert emb.shape == (3, 6)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  again = enc.speaker_embeddings(clips[:1], 16000)
  np.testing.assert_allclose(again[0], emb[0], atol=1e-5)
  assert abs(float(emb[0] @ emb[1])) < 0.9999   # the input matters


@pytest.fixture(scope="module")
def resemblyzer():
  return plugged.load_plugged({"speaker": plugged.RESEMBLYZER})["speaker"]


def test_resemblyzer_tells_espeak_voices_apart(resemblyzer):
  from csm_jax.data.synthetic.espeak import Prosody, synthesize
  sentences = ("The weather is lovely this morning.",
               "I think we should leave before noon.",
               "Could you pass me the salt, please?")
  voices = (("en-us+m3", Prosody(pitch=30)),
            ("en-gb-x-rp+f2", Prosody(pitch=74)))
  rate = 24000
  clips = [synthesize(s, v, p, sample_rate=rate) for v, p in voices
           for s in sentences]
  emb = resemblyzer.speaker_embeddings(clips, rate)
  assert emb.shape == (6, 256)
  sim = emb @ emb.T
  same = [sim[i, j] for v in (0, 3) for i in range(v, v + 3)
          for j in range(i + 1, v + 3)]
  different = sim[:3, 3:].ravel()
  assert np.mean(same) > np.mean(different) + 0.1, sim
  assert min(same) > max(different) - 0.1, sim
  assert "resemblyzer" in resemblyzer.describe()


def test_resemblyzer_survives_silence_and_empty_audio(resemblyzer):
  emb = resemblyzer.speaker_embeddings(
      [np.zeros(0, np.float32), np.zeros(8000, np.float32),
       hf.tone(0.2, 16000)], 16000)
  assert np.all(np.isfinite(emb))
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


# -- bad input, one line each ---------------------------------------------------

@pytest.mark.parametrize("flag", ["--recognizer", "--speaker_model"])
def test_missing_directory_says_where_to_put_the_model(flag, tmp_path):
  where = str(tmp_path / "nothing_here")
  with pytest.raises(ModelDirError) as e:
    model_dirs.inspect(where, flag)
  _one_line_error(e, flag, where, "save_pretrained", "no model is downloaded")


def test_a_file_or_a_directory_without_config_is_refused(tmp_path):
  f = tmp_path / "model.bin"
  f.write_bytes(b"\0")
  with pytest.raises(ModelDirError) as e:
    model_dirs.inspect(str(f), "--recognizer")
  _one_line_error(e, "--recognizer", "not a model directory")
  with pytest.raises(ModelDirError) as e:
    model_dirs.inspect(str(tmp_path), "--speaker_model")
  _one_line_error(e, "--speaker_model", "no config.json",
                  str(tmp_path / "config.json"))


def test_unreadable_config_is_refused(tmp_path):
  (tmp_path / "config.json").write_text("{not json")
  with pytest.raises(ModelDirError) as e:
    model_dirs.inspect(str(tmp_path), "--recognizer")
  _one_line_error(e, "config.json cannot be read")
  (tmp_path / "config.json").write_text("[1, 2]")
  with pytest.raises(ModelDirError) as e:
    model_dirs.inspect(str(tmp_path), "--recognizer")
  _one_line_error(e, "not a JSON object")


def test_a_model_of_the_wrong_kind_is_refused(model_root, tmp_path):
  with pytest.raises(ModelDirError) as e:
    plugged.check(speaker_model=str(model_root / "whisper"))
  _one_line_error(e, "--speaker_model", "WhisperForConditionalGeneration",
                  "not a speaker encoder")
  with pytest.raises(ModelDirError) as e:
    plugged.check(recognizer=str(model_root / "xvector"))
  _one_line_error(e, "--recognizer", "WavLMForXVector",
                  "not a Whisper or CTC speech recognizer")
  text = tmp_path / "bert"
  text.mkdir()
  (text / "config.json").write_text(json.dumps(
      {"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
  with pytest.raises(ModelDirError) as e:
    plugged.check(recognizer=str(text))
  _one_line_error(e, "BertForMaskedLM", str(text / "config.json"))


def test_right_kind_but_broken_weights_is_one_line(model_root, tmp_path):
  import shutil
  broken = tmp_path / "whisper"
  shutil.copytree(model_root / "whisper", broken)
  (broken / "model.safetensors").write_bytes(b"not a safetensors file")
  d = model_dirs.inspect(str(broken), "--recognizer")
  with pytest.raises(ModelDirError) as e:
    tm.WhisperRecognizer(d)
  _one_line_error(e, "--recognizer", "cannot be loaded", str(broken))


def test_a_ctc_model_without_its_tokenizer_is_one_line(model_root, tmp_path):
  import shutil
  bare = tmp_path / "ctc"
  shutil.copytree(model_root / "ctc", bare)
  for name in os.listdir(bare):
    if name not in ("config.json", "model.safetensors",
                    "preprocessor_config.json"):
      os.remove(bare / name)
  d = model_dirs.inspect(str(bare), "--recognizer")
  with pytest.raises(ModelDirError) as e:
    tm.CTCRecognizer(d)
  _one_line_error(e, "--recognizer", str(bare))


def test_a_missing_package_says_how_to_install_it():
  with pytest.raises(ModelDirError) as e:
    model_dirs.require("no_such_package_here", "--speaker_model",
                       "resemblyzer")
  _one_line_error(e, "--speaker_model", "no_such_package_here",
                  "pip install", ".[instruments]")


def test_corpus_is_the_default_and_plugs_nothing():
  assert plugged.check() == {}
  assert plugged.check(plugged.CORPUS, plugged.CORPUS) == {}
  assert plugged.check(speaker_model="resemblyzer") == {
      "speaker": plugged.RESEMBLYZER}


def _evaluate_cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "csm_jax.evaluate", *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, PYTHONPATH=ROOT))


def test_command_line_refuses_a_missing_model_before_loading_the_run(
    tmp_path):
  where = str(tmp_path / "whisper-small")
  proc = _evaluate_cli(f"--checkpoint={tmp_path / 'no_run'}",
                       f"--recognizer={where}")
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
  assert lines[0].startswith("error: --recognizer: no model directory at "
                             + where), lines[0]
  proc = _evaluate_cli(f"--checkpoint={tmp_path}", "--suite=curve",
                       "--speaker_model=resemblyzer")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "--speaker_model" in lines[0], proc.stderr
