"""Debug codec: the spectral family, 16 kHz, 25 Hz frames, 8 levels x 256 codes (1.6 kbps).

The codec the debug CSM predicts (docs/codec.md). Trained on the embedded
dialogue corpus, with its phonetic first level learning the phonemes eSpeak
recorded while speaking it.
Run:  python -m csm_jax.train --config=configs/codec_debug.py --workdir=/tmp/codec
then score its resynthesis of held-out prompts at every checkpoint, beside
the k-means mel RVQ floor at the same bit rate:
      python -m csm_jax.evaluate --checkpoint=/tmp/codec --suite=codec_curve
3,600 steps (8 one-second crops each; 7 minutes on 2 cores), half of the
examples passing their latent on unquantized, measured on the 3-hour
corpus's held-out prompts (129, 95% intervals): CER 0.083 at step 1,200,
0.064 at 2,400, 0.061 [0.054, 0.068] at 3,600, against ground truth 0.052
and the floor's 0.070; paired against the floor -0.008 [-0.014, -0.002],
speaker similarity +0.000 [-0.002, +0.003]. Every level uses 100% of its
codes.
The CSM pipeline exports the same codec into <workdir>/codec/export.
"""

from csm_jax.config import make_config
from csm_jax.config.presets import apply_overrides, codec_training


def get_config(arg=None):
  config = codec_training(make_config("debug").codec, steps=3600)
  # The 3-hour corpus, as the default job's codec (configs/debug.py).
  config.data.corpus_size = "medium"
  t = config.train
  t.warmup_steps, t.eval_every, t.ckpt_every, t.log_every = 50, 1200, 1200, 100
  return apply_overrides(config, arg)
