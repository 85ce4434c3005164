"""Debug codec: the spectral family, 16 kHz, 25 Hz frames, 8 levels x 256 codes (1.6 kbps).

The codec the debug CSM predicts (docs/codec.md). Trained on the embedded
dialogue corpus, with its phonetic first level learning the phonemes eSpeak
recorded while speaking it.
Run:  python -m csm_jax.train --config=configs/codec_debug.py --workdir=/tmp/codec
then score its resynthesis of held-out prompts at every checkpoint, beside
the k-means mel RVQ floor at the same bit rate:
      python -m csm_jax.evaluate --checkpoint=/tmp/codec --suite=codec_curve
1,200 steps (8 one-second crops each) measured on 24 held-out prompts,
against ground truth CER 0.088 / speaker similarity 0.963 and the floor's
0.127 [0.091, 0.161] / 0.961: CER 0.141 [0.108, 0.176] at step 600, 0.123 at
900, 0.118 [0.091, 0.145] at 1,200 (speaker similarity 0.892, 0.938, 0.951
[0.921, 0.973]); every level uses 100% of its codes.
The CSM pipeline exports the same codec into <workdir>/codec/export.
"""

from csm_jax.config import make_config
from csm_jax.config.presets import apply_overrides, codec_training


def get_config(arg=None):
  config = codec_training(make_config("debug").codec, steps=1200)
  t = config.train
  t.warmup_steps, t.eval_every, t.ckpt_every, t.log_every = 50, 600, 300, 100
  return apply_overrides(config, arg)
