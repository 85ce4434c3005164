"""Medium CSM (~7B parameters), the research plan's publication target.

Run:  python -m csm_jax.train --config=configs/medium.py --workdir=gs://.../medium
Plan: python -m csm_jax.plan --config=configs/medium.py --topology=v5p-64
"""

from csm_jax.config import preset


def get_config(arg=None):
  return preset("7B", arg, train__steps=300_000, train__warmup_steps=2000,
                train__lr=1.5e-4, train__eval_every=5000,
                train__ckpt_every=1000, model__dtype="bfloat16",
                model__remat="full")
