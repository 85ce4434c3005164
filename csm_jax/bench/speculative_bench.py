"""Speculative depth decoding: acceptance per codebook and frames per pass.

``python -m csm_jax.bench speculative --workdir=RUN`` loads a trained run
(or an export), lays out a real prompt for ``--text`` exactly as generation
does, and decodes ``--frames`` frames with ``speculative.generate_frames``,
once sampled (the generation defaults, temperature 0.9, top-k 50) and once
greedy. It reports, per codebook, how often the drafter's code was accepted
when it was compared, and the verification passes a frame needed: what
the speedup depends on. Random weights would say little here: the
acceptance is a property of the trained decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.inference import decode, speculative
from csm_jax.inference.loading import load_generator


def acceptance(stats: dict) -> dict:
  """Figures from summed ``speculative`` stats (arrays (B, N) / (B,)).

  Returns per-codebook acceptance (None where no draft was compared, e.g.
  codebook 0), the overall rate and the verification passes per frame.
  """
  ev = np.asarray(stats["evaluated"]).sum(0)
  ac = np.asarray(stats["accepted"]).sum(0)
  per = [None if e == 0 else round(float(a / e), 4) for a, e in zip(ac, ev)]
  return {"acceptance_per_codebook": per,
          "acceptance": float(ac.sum() / max(ev.sum(), 1)),
          "drafts_compared": int(ev.sum()),
          "rounds": int(np.asarray(stats["rounds"]).sum())}


def prompted_state(gen, text: str, speaker: int, frames: int) -> dict:
  """The decoding state after a one-turn prompt (batch 1), as generation."""
  rows = gen.prompt_rows(text, speaker, (), reserve=frames)
  model = nnx.merge(gen.graphdef, gen.params)
  state = decode.init_state(model, 1, gen.max_len)
  column = (tuple(jnp.asarray(rows[k])[None] for k in (
      "prosody_f0", "prosody_energy", "prosody_style", "prosody_mask"))
            if "prosody_f0" in rows else None)
  return decode.append_rows(
      model, state, *(jnp.asarray(rows[k])[None] for k in (
          "audio_tokens", "text_tokens", "mask", "positions",
          "segment_ids")), prosody=column)


def measure(gen, text: str, frames: int = 64, draft: int = 2,
            temperature: float = 0.9, top_k: int = 50, speaker: int = 0,
            seed: int = 0, draft_layers: int = 1) -> dict:
  """Acceptance figures of ``frames`` frames after a ``text`` prompt."""
  state = prompted_state(gen, text, speaker, frames)
  temps = jnp.full((gen.n,), temperature, jnp.float32)

  @jax.jit
  def run(params, state, key):
    model = nnx.merge(gen.graphdef, params)
    return speculative.generate_frames(model, state, key, frames, temps,
                                       top_k, draft=draft,
                                       draft_layers=draft_layers,
                                       return_stats=True)

  out = run(gen.params, state, jax.random.key(seed)[None])
  codes, stats = np.asarray(out[0]), out[-1]
  eos = np.flatnonzero(np.asarray(out[1])[:, 0])
  result = acceptance(stats)
  result["frames"] = frames
  result["passes_per_frame"] = result["rounds"] / frames
  result["first_eos_frame"] = int(eos[0]) if len(eos) else None
  result["distinct_frames"] = int(len(np.unique(codes[:, 0], axis=0)))
  return result


def bench_speculative(checkpoint: str, text: str, frames: int = 64,
                      drafts=(1, 2, 4), seed: int = 0) -> dict:
  """Sampled and greedy acceptance for each draft length."""
  gen = load_generator(checkpoint)
  out = {"checkpoint": checkpoint, "text": text,
         "decoder_layers": nnx.merge(gen.graphdef, gen.params)
         .decoder.spec.depth, "draft_layers": 1}
  for draft in drafts:
    for name, temp in (("sampled", 0.9), ("greedy", 0.0)):
      r = measure(gen, text, frames, draft, temperature=temp, seed=seed)
      for k, v in r.items():
        out[f"k{draft}_{name}_{k}"] = v
  return out
