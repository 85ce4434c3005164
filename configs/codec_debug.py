"""Debug codec: 16 kHz, 25 Hz frames, 8 levels x 256 codes; trains on 2 CPU cores.

The codec the debug CSM predicts. Trained on the embedded dialogue corpus.
Run:  python -m csm_jax.train --config=configs/codec_debug.py --workdir=/tmp/codec
then evaluate the run directly (the CLI restores its latest checkpoint):
      python -m csm_jax.codec evaluate --checkpoint=/tmp/codec clip.wav
On held-out corpus turns (5 validation turns, 34 s) 400 steps took log-mel
distance 0.89 -> 0.59, STFT distance 3.48 -> 2.37 and SI-SDR -56.5 -> -6.1 dB
(after 1 step -> after 400, all 8 levels); every level uses 68-88 % of its
256 codes.
The CSM pipeline exports the same codec into <workdir>/codec/export.
"""

from csm_jax.config import make_config
from csm_jax.config.presets import apply_overrides, codec_training


def get_config(arg=None):
  # ~0.7 steps/s on two shared CPU cores: 400 steps plus compilation and two
  # evals is about ten minutes.
  config = codec_training(make_config("debug").codec, steps=400)
  t = config.train
  t.warmup_steps, t.eval_every, t.ckpt_every, t.log_every = 40, 200, 200, 25
  # Loss weights are the debug codec's own (waveform 0.1, GAN from step
  # 200): waveform 0.2 with the GAN from step 300 measured no better.
  return apply_overrides(config, arg)
