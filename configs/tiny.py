"""Tiny CSM (~350M parameters), first rung of the research plan's ladder.

Run:  python -m csm_jax.train --config=configs/tiny.py --workdir=gs://.../tiny
Plan: python -m csm_jax.plan --config=configs/tiny.py
"""

from csm_jax.config import preset


def get_config(arg=None):
  return preset("350M", arg, train__steps=100_000, train__warmup_steps=2000,
                train__eval_every=2000, train__ckpt_every=1000,
                model__dtype="bfloat16", model__remat="dots_no_batch")
