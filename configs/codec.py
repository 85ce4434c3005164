"""Full-size codec in Mimi's shape: 24 kHz, 12.5 Hz, split RVQ 1 + 31 x 2048.

SEANet 64->1024 channels, 8-layer bottleneck transformers (width 512, context
250 frames), a split quantizer (a level-0 quantizer and a 31-level acoustic
chain reading the same latent, their outputs summed), a replicate-padded
latent downsample, a depthwise latent upsample and exact GELU: the codec of
configs/csm_1b.py, computing as Kyutai's Mimi does, so Mimi's released
weights load into it exactly (``python -m csm_jax.convert mimi``). Level 0
is distilled toward per-frame teacher features only when a corpus provides
them (``codec.semantic.weight``; 0 here, so there is no semantic head).
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
  # The split stays (Mimi's 1 + 31 levels); distillation needs per-frame
  # teacher features in the data, so it is off until a corpus has them.
  c.codec.semantic.weight = 0.0
  return apply_overrides(c, arg)
