"""The README's main job at its smallest, for the end-to-end tests."""

import importlib.util
import os

from csm_jax.training.run import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

SMALL = ("data.corpus_size=tiny,data.codec_steps=6,train.steps=4,"
         "train.log_every=2,train.eval_every=4,train.ckpt_every=2,"
         "train.eval_steps=1,data.seq_len=192,data.batch_size=2,"
         "model.max_seq_len=512")


def train_tiny_run(base):
  """configs/debug.py with SMALL's overrides, trained in ``base``/run on the
  tiny corpus built in ``base``/data: (config, workdir, train output)."""
  spec = importlib.util.spec_from_file_location(
      "debug_cfg", os.path.join(ROOT, "configs", "debug.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(SMALL + f",data.data_dir={base / 'data'}")
  wd = str(base / "run")
  return c, wd, train_and_evaluate(c, wd)


def small_instruments():
  """Instruments small enough to train in seconds: these tests check the
  reports, not the instruments' accuracy (tests/eval and
  docs/evaluation.md hold that)."""
  from csm_jax.config.schema import INSTRUMENT_TASKS  # pylint: disable=g-import-not-at-top
  small = {"train.steps": 3, "train.log_every": 1, "train.eval_every": 3,
           "train.eval_steps": 1, "train.warmup_steps": 1,
           "data.batch_size": 2, "instrument.net.width": 16,
           "instrument.net.dilations": (1, 2)}
  return {k: dict(small) for k in INSTRUMENT_TASKS}
