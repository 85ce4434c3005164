"""The README's main job at its smallest, for the end-to-end tests."""

import importlib.util
import os

from csm_jax.codec.handle import CodecHandle
from csm_jax.eval.instruments.cache import ensure_instruments
from csm_jax.eval.mel_rvq import corpus_floor
from csm_jax.store import layout
from csm_jax.training.run import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))

# The debug CSM's layout with half its layers and a quarter of its width:
# the tests check the pipeline, and compiling is most of their time.
SMALL = ("data.corpus_size=tiny,data.codec_steps=6,train.steps=4,"
         "train.log_every=2,train.eval_every=4,train.ckpt_every=2,"
         "train.eval_steps=1,data.seq_len=192,data.batch_size=2,"
         "model.max_seq_len=512,"
         "model.backbone.width=64,model.backbone.depth=2,"
         "model.backbone.mlp=192,model.decoder.width=32,"
         "model.decoder.depth=1,model.decoder.mlp=96")


def train_tiny_run(base):
  """configs/debug.py with SMALL's overrides, trained in ``base``/run on the
  tiny corpus built in ``base``/data: (config, workdir, train output)."""
  spec = importlib.util.spec_from_file_location(
      "debug_cfg", os.path.join(ROOT, "configs", "debug.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config(SMALL + f",data.data_dir={base / 'data'}")
  wd = str(base / "run")
  out = train_and_evaluate(c, wd)
  # What a first evaluation of the corpus fits and caches beside it (its
  # instruments and the k-means mel floor at the codec's bit rate): the
  # tests that evaluate the run share them.
  ensure_instruments(c, progress=lambda _: None,
                     overrides=small_instruments())
  corpus_floor(c, CodecHandle.load(layout.run_codec_dir(c, wd)))
  return c, wd, out


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
