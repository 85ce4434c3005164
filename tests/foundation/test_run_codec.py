"""Which codec a fine-tuned run speaks with: the one of the run it starts
from (``train.init_from``), whether that is an export or a workdir."""

import json

import ml_collections

from csm_jax.store import layout


def _codec(d):
  d.mkdir(parents=True)
  (d / "config.json").write_text("{}")
  (d / "weights.npz").write_bytes(b"")
  return str(d)


def _config(init_from):
  return ml_collections.ConfigDict(dict(
      task="csm", data=dict(source="dialogues", codec_dir=""),
      train=dict(init_from=str(init_from))))


def test_an_export_speaks_with_its_own_codec(tmp_path):
  exp = tmp_path / "export"
  want = _codec(exp / layout.EXPORT_CODEC)
  assert layout.codec_of_run(str(exp)) == want
  assert layout.run_codec_dir(_config(exp), str(tmp_path / "w")) == want


def test_a_workdir_speaks_with_the_codec_it_trained(tmp_path):
  # <workdir>/codec is the codec's training run there, not a codec: its
  # export inside is.
  wd = tmp_path / "run"
  want = _codec(tmp_path / "run" / layout.CODEC_RUN / "export")
  assert layout.own_codec_export(str(wd)) == want
  assert layout.codec_of_run(str(wd)) == want
  assert layout.run_codec_dir(_config(wd), str(tmp_path / "w")) == want


def test_a_workdir_given_a_codec_speaks_with_that_one(tmp_path):
  given = _codec(tmp_path / "elsewhere")
  wd = tmp_path / "run"
  wd.mkdir()
  (wd / layout.RUN_CONFIG).write_text(json.dumps(
      {"task": "csm", "data": {"codec_dir": given}}))
  assert layout.codec_of_run(str(wd)) == given
  assert layout.codec_of_run(str(tmp_path / "nothing")) is None
