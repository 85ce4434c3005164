"""``python -m csm_jax.generate`` against every bad input a user can give.

Each failure is one line on stderr and a non-zero exit; a long context
still gives audio; no audio is never a success; the wav follows the umask
and generation from a workdir writes nothing else anywhere.
"""

import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from csm_jax.store import layout
from tests.faults import harness
from tests.faults import speakable


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  return harness.once_per_session(tmp_path_factory, "fault_speakable",
                                  speakable.build)


def _generate(checkpoint, *args, **kw):
  return harness.cli("csm_jax.generate", f"--checkpoint={checkpoint}", *args,
                     **kw)


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


# -- refused before the model loads ----------------------------------------

def test_bad_request_files_and_paths(run, tmp_path):
  ctx = tmp_path / "ctx.json"
  ctx.write_text('[{"speaker": 0, "text": "hi"},')
  harness.one_error_line(_generate(run, "--text=Hi.", f"--context={ctx}"), 1,
                         str(ctx), "not valid JSON", "line 1")
  ctx.write_text('{"speaker": 0}')
  harness.one_error_line(_generate(run, "--text=Hi.", f"--context={ctx}"), 1,
                         str(ctx), "expected a JSON list of turns")
  ctx.write_text('[{"speaker": "x", "text": "hi"}]')
  harness.one_error_line(_generate(run, "--text=Hi.", f"--context={ctx}"), 1,
                         "turn 0", "'speaker' must be an integer")
  batch = tmp_path / "b.jsonl"
  batch.write_text('{"text": "one"}\n{"text": "two",\n')
  harness.one_error_line(_generate(run, f"--batch={batch}"), 1,
                         f"{batch} line 2", "not valid JSON")
  missing = tmp_path / "missing.json"
  harness.one_error_line(
      _generate(run, "--text=Hi.", f"--context={missing}"), 1,
      "no such file or directory", str(missing))
  harness.one_error_line(
      _generate(run, "--text=Hi.", f"--out={tmp_path}"), 1,
      f"--out={tmp_path} is a directory")
  harness.one_error_line(_generate(str(tmp_path), "--text=Hi."), 1,
                         "neither an export nor a training workdir")


@pytest.mark.parametrize("flag,words", [
    ("--levels=0", "--levels must be at least 1"),
    ("--max_seconds=0", "--max_seconds must be > 0"),
    ("--max_seconds=-1", "--max_seconds must be > 0"),
    ("--min_seconds=2", "--min_seconds must be below --max_seconds"),
    ("--top_p=0", "--top_p must be in (0, 1]"),
    ("--levelz=2", "Unknown command line flag 'levelz'"),
    ("--latency_budget_ms=0", "--latency_budget_ms must be > 0"),
])
def test_bad_flags_fail_as_they_are_parsed(run, flag, words, tmp_path):
  r = _generate(run, "--text=Hi.", "--max_seconds=1", flag,
                f"--out={tmp_path / 'x.wav'}")
  harness.one_error_line(r, 2, words, "(see --help)")
  assert not (tmp_path / "x.wav").exists()


def test_neither_text_nor_batch_is_a_usage_error(run):
  harness.one_error_line(_generate(run), 2, "--text=...", "--batch=FILE")


# -- refused once the model is known ---------------------------------------

def test_levels_above_the_models_codebooks(run, tmp_path):
  harness.one_error_line(
      _generate(run, "--text=Hi.", "--levels=99", f"--out={tmp_path}/x.wav"),
      1, "--levels=99 but the model predicts 4 codebooks")


def test_a_text_longer_than_the_model_holds(run, tmp_path):
  harness.one_error_line(
      _generate(run, "--text=" + "word " * 1000, f"--out={tmp_path}/x.wav"),
      1, "--text: the text takes", "shorten the text (5000 characters)")
  assert not (tmp_path / "x.wav").exists()


def test_an_unknown_speaker(run, tmp_path):
  harness.one_error_line(
      _generate(run, "--text=Hi.", "--speaker=99", f"--out={tmp_path}/x.wav"),
      1, "99")


def test_no_audio_is_an_error_not_an_empty_wav(run, tmp_path):
  silent = speakable.silent_export(run, str(tmp_path / "silent"))
  out = tmp_path / "x.wav"
  harness.one_error_line(
      _generate(silent, "--text=Hi.", "--temperature=0", f"--out={out}"), 1,
      "no audio was generated", "nothing written", "--min_seconds")
  assert not out.exists()
  batch = tmp_path / "b.jsonl"
  batch.write_text('{"text": "one", "out": "a.wav"}\n{"text": "two"}\n')
  harness.one_error_line(
      _generate(silent, f"--batch={batch}", "--temperature=0",
                f"--out_dir={tmp_path / 'wavs'}"), 1,
      f"2 of 2 requests of {batch} (a.wav, 00001.wav)",
      "no audio was generated")
  assert not os.listdir(tmp_path / "wavs")


def _copy(run, dst):
  shutil.copytree(run, dst)
  return str(dst)


def test_a_broken_tokenizer_or_checkpoint_is_one_line(run, tmp_path):
  """A TokenizerError and a CheckpointError (the workdir's only checkpoint
  cut short) from generate: one line each, the workdir untouched."""
  wd = _copy(run, tmp_path / "tok")
  with open(os.path.join(wd, layout.TOKENIZER), "wb") as f:
    f.write(b"not a sentencepiece model")
  harness.one_error_line(
      _generate(wd, "--text=Hi.", f"--out={tmp_path}/x.wav"), 1,
      f"{wd}/{layout.TOKENIZER}: not a SentencePiece model")
  wd = _copy(run, tmp_path / "ckpt")
  step = harness.committed(wd)[-1]
  state = os.path.join(wd, layout.CHECKPOINTS, str(step), "state")
  for d, _, fs in os.walk(state):
    for name in fs:
      if "ocdbt.process" in d:
        f = os.path.join(d, name)
        os.truncate(f, os.path.getsize(f) // 3)
  before = _files(wd)
  harness.one_error_line(
      _generate(wd, "--text=Hi.", f"--out={tmp_path}/x.wav"), 1,
      f"checkpoint {step} of {wd} could not be restored", state)
  assert _files(wd) == before
  assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("damage,words", [
    ("config", "config.json is not readable JSON"),
    ("weights", "weights.npz is not a codec's weights file"),
    ("truncated", "weights.npz is not a codec's weights file (BadZipFile"),
    ("missing", "weights.npz lacks")])
def test_a_broken_codec_in_the_workdir_is_one_line(run, tmp_path, damage,
                                                   words):
  """The run's codec export (config.json + weights.npz) damaged: one line
  naming the file, not a numpy or zipfile traceback."""
  wd = _copy(run, tmp_path / "codec")
  codec = layout.own_codec_export(wd)
  weights = os.path.join(codec, "weights.npz")
  if damage == "config":
    with open(os.path.join(codec, "config.json"), "w") as f:
      f.write("{")
  elif damage == "weights":
    with open(weights, "wb") as f:
      f.write(b"not an npz")
  elif damage == "truncated":
    os.truncate(weights, os.path.getsize(weights) // 2)
  else:
    stored = dict(np.load(weights))
    del stored[sorted(stored)[0]]
    np.savez(weights, **stored)
  harness.one_error_line(
      _generate(wd, "--text=Hi.", f"--out={tmp_path}/x.wav"), 1, codec, words)
  assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("content,words", [
    ("{not json", "is not a readable JSON config"),
    ('{"model": 3}', "is not a csm_jax config: it names no task"),
    ('{"task": "csm", "model": 3}', "section 'model' is not a mapping"),
    ('{"task": "csm", "model": {"backbone": 3}}',
     "a 'csm' config has no section 'data'"),
    ('{"task": "csm", "model": {"backbone": 3}, "data": {}, "train": {}}',
     "section 'model.backbone' is not a mapping")])
def test_a_run_config_that_is_not_ours_is_one_line(run, tmp_path, content,
                                                   words):
  wd = _copy(run, tmp_path / "cfg")
  with open(os.path.join(wd, layout.RUN_CONFIG), "w") as f:
    f.write(content)
  harness.one_error_line(
      _generate(wd, "--text=Hi.", f"--out={tmp_path}/x.wav"), 1,
      f"{wd}/{layout.RUN_CONFIG}", words)


@pytest.mark.parametrize("field,value,words", [
    (("model", "backbone", "width"), "wide",
     "config.model.backbone.width: must be int, got 'wide'"),
    (("model", "dtype"), 3, "config.model.dtype: must be str, got 3"),
    (("train", "lr"), "fast", "config.train.lr: must be a number"),
    (("task",), "bogus", "config.task: unknown task 'bogus'")])
def test_a_run_config_field_of_the_wrong_type_is_one_line(run, tmp_path,
                                                          field, value, words):
  """Read back from JSON a config is not type-checked by ml_collections: a
  wrong type used to reach the model and fail inside JAX."""
  wd = _copy(run, tmp_path / "typed")
  path = os.path.join(wd, layout.RUN_CONFIG)
  with open(path) as f:
    raw = json.load(f)
  node = raw
  for key in field[:-1]:
    node = node[key]
  node[field[-1]] = value
  with open(path, "w") as f:
    json.dump(raw, f)
  harness.one_error_line(
      _generate(wd, "--text=Hi.", f"--out={tmp_path}/x.wav"), 1, path, words)


def test_an_empty_checkpoint_is_named(tmp_path):
  harness.one_error_line(
      _generate("", "--text=Hi.", f"--out={tmp_path}/x.wav"), 1,
      "no checkpoint given")


def test_an_unreadable_export_description_is_one_line(run, tmp_path):
  exp = tmp_path / "export"
  exp.mkdir()
  shutil.copy(os.path.join(run, layout.RUN_CONFIG), exp / layout.EXPORT_CONFIG)
  (exp / layout.EXPORT_INFO).write_text("x")
  harness.one_error_line(
      _generate(str(exp), "--text=Hi.", f"--out={tmp_path}/x.wav"), 1,
      f"{exp}/{layout.EXPORT_INFO} is not a readable JSON export description")


# -- what works -----------------------------------------------------------

def test_a_long_context_still_speaks_and_writes_nothing_else(run, tmp_path):
  """Twelve turns of two seconds each, far beyond the trained length: the
  oldest are trimmed and the reply still gets frames. The wav follows the
  umask; no temp export, nothing new in the workdir."""
  sr = speakable.tiny_codec_config().sample_rate
  t = np.arange(2 * sr) / sr
  turns = []
  for i in range(12):
    wav = tmp_path / f"turn{i}.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * (150 + 20 * i) * t)).astype(
        np.float32), sr)
    turns.append({"speaker": i % 2, "text": f"Turn number {i}.",
                  "audio": wav.name})
  ctx = tmp_path / "ctx.json"
  ctx.write_text(json.dumps(turns))
  tmp = tmp_path / "tmp"
  tmp.mkdir()
  before = _files(run)
  out = tmp_path / "reply.wav"
  old = os.umask(0o022)
  try:
    r = _generate(run, "--text=Fine, thanks.", "--speaker=1",
                  f"--context={ctx}", "--min_seconds=0.02", f"--out={out}",
                  extra_env={"TMPDIR": str(tmp)})
  finally:
    os.umask(old)
  harness.ok(r)
  assert "context trimmed" in r.stderr
  audio, got_sr = sf.read(out)
  assert got_sr == sr and len(audio) >= 0.02 * sr
  assert json.loads(r.stdout)["frames"] > 0
  assert os.stat(out).st_mode & 0o777 == 0o644
  assert not os.listdir(tmp)
  assert _files(run) == before
