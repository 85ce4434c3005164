"""How each instrument is trained: a trainer config per instrument.

A recipe is an ordinary config of the one schema (``make_config``) with
``task`` set to the instrument and its training section filled in, plus an
``instrument`` section: ``net`` (the network's shape and the corpus's
feature statistics, which a checkpoint depends on), ``data`` (window, crop,
label field), ``loss`` and ``augment``. It is saved with the run
(``run_config.json``), so a trained instrument is rebuilt from its own
workdir. Sizes and step counts are the smallest measured to meet the
validity targets on the default corpus on two CPU cores (what was tried and
what it cost: docs/evaluation.md, "Instruments").
"""

from __future__ import annotations

import dataclasses

import ml_collections

from csm_jax.config import make_config
from csm_jax.config.schema import INSTRUMENT_TASKS
from csm_jax.eval.instruments import augment as aug_lib

RECOGNIZER, SPEAKER, EMOTION = INSTRUMENT_TASKS
KINDS = INSTRUMENT_TASKS
# Bump when a recipe changes what an instrument is: caches of another
# version are retrained.
RECIPE_VERSION = 1

_NET = {
    # Convolutions at 25 Hz (4 stacked 10 ms frames), one BiGRU, two CTC
    # frames per trunk frame (50 Hz output).
    RECOGNIZER: dict(width=192, dilations=(1, 2, 4), kernel=5, mlp_ratio=2,
                     stack=4, upsample=2, rnn_layers=1, rnn_hidden=160,
                     embed_dim=0, n_classes=0, cosine_head=False),
    SPEAKER: dict(width=128, dilations=(1, 2, 4, 8), kernel=5, mlp_ratio=2,
                  stack=4, upsample=1, rnn_layers=0, rnn_hidden=0,
                  embed_dim=128, n_classes=0, cosine_head=True),
    EMOTION: dict(width=128, dilations=(1, 2, 4, 8), kernel=5, mlp_ratio=2,
                  stack=4, upsample=1, rnn_layers=0, rnn_hidden=0,
                  embed_dim=64, n_classes=0, cosine_head=False),
}
# (steps, batch, peak learning rate, warmup steps)
_TRAIN = {RECOGNIZER: (1400, 4, 3e-3, 60), SPEAKER: (250, 32, 2e-3, 25),
          EMOTION: (400, 32, 2e-3, 40)}
_DATA = {
    # 16 s windows hold all but the longest few turns whole.
    RECOGNIZER: dict(window_frames=1600, max_label=450, crop_frames=0,
                     label_field="text"),
    SPEAKER: dict(window_frames=0, max_label=0, crop_frames=200,
                  label_field="speaker"),
    EMOTION: dict(window_frames=0, max_label=0, crop_frames=400,
                  label_field="emotion"),
}
# Emotion is carried by level, pitch and rate relative to the speaker, so
# its classifier sees only small changes of them (a +-4 dB gain would hide
# the few dB between calm and angry speech).
_AUGMENT = {
    RECOGNIZER: {}, SPEAKER: {},
    EMOTION: dict(gain_db=(-1.0, 1.0), warp=(0.99, 1.01), tempo=(0.98, 1.02)),
}


def recipe(kind: str, n_classes: int, norm_mean, norm_std,
           overrides: dict | None = None) -> ml_collections.ConfigDict:
  """The trainer config of instrument ``kind``.

  ``n_classes`` is the number of speakers or emotions (ignored by the
  recognizer); ``norm_mean``/``norm_std`` the per-band statistics of the
  training features. ``overrides`` maps dotted fields ("train.steps",
  "instrument.net.width") to values, for tests and experiments.
  """
  if kind not in KINDS:
    raise ValueError(f"unknown instrument {kind!r}; known: {KINDS}")
  c = make_config("debug", task=kind)
  steps, batch, lr, warmup = _TRAIN[kind]
  t = c.train
  t.steps, t.lr, t.warmup_steps, t.min_lr_ratio = steps, lr, warmup, 0.05
  t.weight_decay, t.b1, t.b2, t.grad_clip = 0.01, 0.9, 0.98, 1.0
  t.log_every, t.eval_every, t.eval_steps = 25, max(steps // 4, 1), 8
  t.ckpt_every, t.keep_checkpoints, t.async_checkpoint = steps, 1, False
  c.data.batch_size = batch
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = -1, 1, 1
  net = dict(_NET[kind], norm_mean=tuple(float(v) for v in norm_mean),
             norm_std=tuple(float(v) for v in norm_std))
  if kind != RECOGNIZER:
    net["n_classes"] = int(n_classes)
  with c.unlocked():
    c.instrument = ml_collections.ConfigDict(dict(
        kind=kind, recipe_version=RECIPE_VERSION, net=net,
        data=dict(_DATA[kind]),
        loss=dict(margin=0.2 if kind == SPEAKER else 0.0,
                  scale=30.0 if kind == SPEAKER else 1.0,
                  label_smoothing=0.0 if kind == SPEAKER else 0.1),
        augment=dataclasses.asdict(aug_lib.Augment(**_AUGMENT[kind]))))
  for key, value in (overrides or {}).items():
    node, *path = key.split(".")
    target = c[node]
    for p in path[:-1]:
      target = target[p]
    if path[-1] not in target:
      raise ValueError(f"recipe override {key!r}: unknown field")
    target[path[-1]] = value
  c.lock()
  return c
