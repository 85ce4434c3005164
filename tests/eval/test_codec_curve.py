"""The codec curve finds its codec run, or says what is wrong with the path."""

import json

import pytest

from csm_jax.eval.codec_curve import codec_workdir
from csm_jax.eval.suite import EvaluationError


# The sections each task's run config must hold (store.run_config checks them).
_SECTIONS = {"codec": ("codec", "data", "train"),
             "csm": ("model", "data", "train")}


def _run(path, task):
  path.mkdir(parents=True)
  config = {"task": task, **{k: {} for k in _SECTIONS[task]}}
  (path / "run_config.json").write_text(json.dumps(config))
  return str(path)


def test_default_is_the_runs_own_codec(tmp_path):
  run = tmp_path / "run"
  codec = _run(run / "codec", "codec")
  assert codec_workdir(str(run), None) == codec


def test_a_csm_run_is_not_a_codec_run(tmp_path):
  other = _run(tmp_path / "csm", "csm")
  with pytest.raises(EvaluationError, match="not a codec run"):
    codec_workdir(str(tmp_path), other)


def test_a_missing_directory_names_the_flag(tmp_path):
  with pytest.raises(EvaluationError, match="--codec_run: .*nowhere"):
    codec_workdir(str(tmp_path), str(tmp_path / "nowhere"))
