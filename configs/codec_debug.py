"""Debug codec: 16 kHz, 25 Hz frames, 8 levels x 256 codes; trains on 2 CPU cores.

The codec the debug CSM predicts. Trained on the embedded dialogue corpus.
Run:  python -m csm_jax.train --config=configs/codec_debug.py --workdir=/tmp/codec
then evaluate the run directly (the CLI restores its latest checkpoint):
      python -m csm_jax.codec evaluate --checkpoint=/tmp/codec clip.wav
The CSM pipeline exports the same codec into <workdir>/codec/export.
"""

from csm_jax.config import make_config
from csm_jax.config.presets import codec_training


def get_config(arg=None):
  return codec_training(make_config("debug").codec, steps=2000, arg=arg)
