"""A training workdir generation can load, built in seconds.

The tiny CSM trains two steps on synthetic tokens; the workdir then gets
what a dialogue run has beside its checkpoints: a sentencepiece tokenizer
(``tokenizer.model``), a codec export (``codec/export``, a tiny random
8 kHz codec with the model's 4 x 32 codes) and a run config that reads
dialogues. ``silent_export`` writes an export of it whose heads are zero,
so greedy decoding ends speech at the first frame.
"""

from __future__ import annotations

import json
import os
import shutil

from csm_jax.codec.io import save_codec
from csm_jax.codec.model import init_codec
from csm_jax.config.codec import codec_config
from csm_jax.data.tokenizer import TextTokenizer
from csm_jax.store import layout
from tests.foundation.tiny import tiny_config

SPEAKERS = 4
TEXTS = [f"[{i % SPEAKERS}] " + t for i, t in enumerate(
    ["Hello there, how are you today?", "Fine, thanks. And you?",
     "Are you coming tonight to the party?", "I think so, if work ends.",
     "Good morning, the weather is lovely.", "Shall we walk to the park?",
     "Numbers like 42 and 7 are fine too.", "See you later, goodbye!"] * 8)]


def tiny_codec_config():
  c = codec_config("debug")
  c.sample_rate = 8000
  c.channels = (4, 8, 8)
  c.ratios = (4, 2)
  c.downsample = 2
  c.latent_dim = 8
  c.transformer.update(layers=1, width=16, heads=2, mlp_ratio=2, context=4,
                       layer_scale=0.1)
  c.rvq.update(levels=4, codebook_size=32, codebook_dim=4)
  return c


def build(workdir: str) -> str:
  # pylint: disable=g-import-not-at-top
  from csm_jax.training.run import make_task
  from csm_jax.training.trainer import Trainer
  c = tiny_config(model__text_vocab=512, train__steps=2, train__ckpt_every=2,
                  train__eval_every=1000)
  Trainer(c, workdir, make_task(c)).run()
  TextTokenizer.train([t.split("] ", 1)[1] for t in TEXTS], 512,
                      os.path.join(workdir, layout.TOKENIZER),
                      num_speakers=SPEAKERS)
  cc = tiny_codec_config()
  save_codec(layout.own_codec_export(workdir), init_codec(cc, 0), cc)
  path = os.path.join(workdir, layout.RUN_CONFIG)
  with open(path) as f:
    config = json.load(f)
  config["data"]["source"] = "dialogues"
  config["codec"] = json.loads(cc.to_json())
  with open(path, "w") as f:
    json.dump(config, f, indent=2)
  return workdir


def silent_export(workdir: str, out: str) -> str:
  """An export of ``workdir`` whose output heads are zero."""
  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from csm_jax.store import models
  from csm_jax.store.export import write_export
  from csm_jax.store.restore import Restored, restore_params
  r = restore_params(workdir, dtype="float32")
  model = r.model()
  model.codebook0_head.kernel[...] = jnp.zeros_like(
      model.codebook0_head.kernel[...])
  model.audio_head[...] = jnp.zeros_like(model.audio_head[...])
  graphdef, params, extra = models.split(model, r.groups)
  write_export(Restored(r.config, graphdef, params, extra, r.groups, r.step,
                        workdir, "workdir"), out, "float32", source=workdir)
  shutil.copy(os.path.join(workdir, layout.TOKENIZER), out)
  shutil.copytree(layout.own_codec_export(workdir),
                  os.path.join(out, layout.EXPORT_CODEC))
  return out
