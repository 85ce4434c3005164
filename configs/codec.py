"""Full-size codec in Mimi's shape: 24 kHz, 12.5 Hz, split RVQ 32 x 2048.

SEANet 64->1024 channels, 8-layer bottleneck transformers (width 512, context
250 frames), a semantic level 0 distilled toward per-frame targets. The codec
of configs/csm_1b.py; pretrained Mimi weights have the same shapes.
Run:  python -m csm_jax.train --config=configs/codec.py --workdir=DIR
Bench: python -m csm_jax.bench codec --config=configs/codec.py
"""

from csm_jax.config import make_config
from csm_jax.config.presets import apply_overrides, codec_training


def get_config(arg=None):
  c = codec_training(make_config("csm_1b").codec, steps=400_000)
  c.data.batch_size = 64
  c.train.lr = 3e-4
  c.train.warmup_steps = 2000
  c.train.eval_every, c.train.ckpt_every = 5000, 2000
  # Semantic distillation needs per-frame teacher features in the data;
  # off until a corpus provides them.
  c.codec.semantic.enabled = False
  c.codec.semantic.weight = 0.0
  return apply_overrides(c, arg)
