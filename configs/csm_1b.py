"""Sesame CSM-1B's exact shape: llama-1B backbone + llama-100M depth decoder.

32 codebooks of 2048 codes (+3 special ids = 2051), Llama-3 text vocabulary
(128,256), RoPE base 500,000 with llama3 scaling (factor 32). Attention is
fully causal, as in Sesame's model: text rows see the whole sequence
(the size row sets ``model.text_window`` = ``model.max_seq_len``), so converted CSM-1B weights
compute what the reference computes (``python -m csm_jax.convert csm``).
Run:  python -m csm_jax.train --config=configs/csm_1b.py --workdir=DIR
Fine-tune a converted model (docs/interop.md):
      python -m csm_jax.train --config=configs/csm_1b.py --workdir=DIR \
        --config.train.init_from=EXPORT --config.train.lora.rank=16
"""

from csm_jax.config import preset


def get_config(arg=None):
  return preset("csm_1b", arg, train__steps=100_000, train__warmup_steps=2000,
                train__eval_every=2000, train__ckpt_every=1000,
                model__dtype="bfloat16", model__remat="dots_no_batch")
