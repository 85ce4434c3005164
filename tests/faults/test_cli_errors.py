"""Typed errors of every layer reach the user as one line, with the stack
only on request (``--traceback``, ``CSM_JAX_DEBUG=1``)."""

import os

import numpy as np
import pytest
import soundfile as sf

from tests.faults import harness


@pytest.mark.parametrize("args,code,words", [
    # The README's own override syntax, with a typo.
    (["--config=configs/debug.py:train.stepz=3"], 2,
     ["config.train.stepz: unknown field"]),
    (["--config=configs/debug.py", "--config.train.stepz=3"], 2,
     ["bad config override", "stepz", "--config.train.stepz=3"]),
    (["--config=configs/debug.py", "--config.train.steps=many"], 2,
     ["--config.train.steps=many"]),
    (["--config=configs/nope.py"], 1,
     ["cannot load the --config file", "configs/nope.py"]),
    (["--config=configs/debug.py:model.backbone.heads=3"], 1,
     ["config.model.backbone.heads"]),
    ([], 2, ["--config must have a value"]),
])
def test_config_errors(args, code, words, tmp_path):
  r = harness.cli("csm_jax.train", *args, f"--workdir={tmp_path / 'w'}")
  harness.one_error_line(r, code, *words)
  assert not os.path.exists(tmp_path / "w" / "checkpoints")


def test_a_workdir_of_another_model_is_refused(reference, tmp_path):
  wd = harness.copy_run(reference[0], str(tmp_path / "run"))
  r = harness.train(wd, "model.backbone.width=32")
  harness.one_error_line(r, 1, f"workdir {wd} holds a run of an "
                         "incompatible config", "model.backbone.width")
  assert harness.committed(wd) == harness.committed(reference[0])


def test_export_errors(tmp_path):
  r = harness.cli("csm_jax.export", f"--workdir={tmp_path}",
                  f"--out={tmp_path / 'out'}")
  harness.one_error_line(r, 1, "run_config.json is missing",
                         "not a csm_jax training workdir")


def test_the_stack_is_shown_on_request(tmp_path):
  args = ["csm_jax.export", f"--workdir={tmp_path}",
          f"--out={tmp_path / 'out'}"]
  for extra, env in ((["--traceback"], None), ([], {"CSM_JAX_DEBUG": "1"})):
    r = harness.cli(*args, *extra, extra_env=env)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "ExportError" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_the_codec_cli_follows_the_same_rules(tmp_path):
  wav = tmp_path / "a.wav"
  sf.write(wav, np.zeros(800, np.float32), 8000)
  r = harness.cli("csm_jax.codec", "encode", f"--checkpoint={tmp_path}",
                  str(wav), str(tmp_path / "x.npy"))
  harness.one_error_line(r, 1, "holds no codec")
  r = harness.cli("csm_jax.codec", "encode", "--checkpoint=x", "--levelz=1")
  harness.one_error_line(r, 2, "Unknown command line flag 'levelz'")
  r = harness.cli("csm_jax.codec", "encode", f"--checkpoint={tmp_path}",
                  str(wav), str(tmp_path / "x.npy"), "--traceback")
  assert r.returncode == 1 and "Traceback" in r.stderr


def test_prepare_and_text_errors(tmp_path):
  r = harness.cli("csm_jax.prepare", "--dataset=manifest_dialogues",
                  f"--data_dir={tmp_path}")
  harness.one_error_line(r, 1, "needs --manifest=PATH")
  bad = tmp_path / "convs.jsonl"
  bad.write_text("{not json\n")
  r = harness.cli("csm_jax.prepare", "--dataset=manifest_dialogues",
                  f"--manifest={bad}", f"--data_dir={tmp_path}")
  harness.one_error_line(r, 1, str(bad))
  r = harness.cli("csm_jax.text", "train", f"--corpus_dir={tmp_path}/none",
                  f"--out={tmp_path}/tok.model")
  harness.one_error_line(r, 1, f"{tmp_path}/none")
