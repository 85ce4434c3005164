"""The fault suite's trainer config: the tiny CSM of tests/foundation.

  python -m csm_jax.train --config=tests/faults/tiny_run.py[:k=v,...]
      --workdir=DIR

Synthetic tokens, 10 steps, a checkpoint every 2 (the last 2 kept): it
trains in seconds, so the suite runs it as a user runs any config.
"""

from csm_jax.config.presets import apply_overrides
from tests.foundation.tiny import tiny_config


def get_config(arg=None):
  c = tiny_config(train__steps=10, train__ckpt_every=2,
                  train__eval_every=1000, train__keep_checkpoints=2)
  return apply_overrides(c, arg)
