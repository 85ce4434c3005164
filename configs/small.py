"""Small CSM (~1.5B parameters), second rung of the research plan's ladder.

Run:  python -m csm_jax.train --config=configs/small.py --workdir=gs://.../small
Plan: python -m csm_jax.plan --config=configs/small.py
"""

from csm_jax.config import preset


def get_config(arg=None):
  return preset("1.5B", arg, train__steps=200_000, train__warmup_steps=2000,
                train__eval_every=5000, train__ckpt_every=1000,
                model__dtype="bfloat16", model__remat="dots_no_batch")
