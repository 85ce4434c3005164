"""The prosody stream of two-stage generation (``config.model.prosody``).

Stage 1, the plan, runs on the backbone state ``h`` that predicts a frame:

  s = h + style_plan(style)                the turn's style (given or sampled
                                           once, at the turn's first frame,
                                           from ``style_head(h)``)
  voicing, F0 bin, energy bin ~ heads(s)   the frame's prosody tokens
  p = s + f0_plan(f0) + energy_plan(energy)

Stage 2, the acoustics, reads the plan ``p``: codebook 0 comes from
``codebook0_head(p)`` and the depth decoder starts from ``p`` instead of
``h``, so the codes of a frame are conditioned on its prosody. The frame is
then fed back with its prosody tokens and style as an extra column
(``column``), so they condition every later frame. The F0 id
``f0_bins`` means unvoiced; the style id ``style_vocab`` means unknown.
"""

from __future__ import annotations

import jax
from flax import nnx

from csm_jax.config import prosody as prosody_config
from csm_jax.model.layers import Embed, Linear, Precision


class ProsodyStream(nnx.Module):
  """Embeddings of the prosody column and of the plan, and stage-1 heads."""

  def __init__(self, p, width: int, prec: Precision, rngs: nnx.Rngs):
    self.f0_bins, self.energy_bins = int(p.f0_bins), int(p.energy_bins)
    self.style_vocab = prosody_config.style_vocab(p)
    f, e, s = self.f0_bins + 1, self.energy_bins, self.style_vocab + 1
    axes = ("vocab", "embed")
    # The frame's extra column (backbone input) ...
    self.f0_in = Embed(f, width, axes, prec, rngs)
    self.energy_in = Embed(e, width, axes, prec, rngs)
    self.style_in = Embed(s, width, axes, prec, rngs)
    # ... and the plan that stage 2 reads (in the backbone's output space).
    self.f0_plan = Embed(f, width, axes, prec, rngs)
    self.energy_plan = Embed(e, width, axes, prec, rngs)
    self.style_plan = Embed(s, width, axes, prec, rngs)
    heads = ("embed", "vocab")
    self.f0_head = Linear(width, self.f0_bins, heads, prec, rngs)
    self.voicing_head = Linear(width, 2, heads, prec, rngs)
    self.energy_head = Linear(width, self.energy_bins, heads, prec, rngs)
    self.style_head = Linear(width, self.style_vocab, heads, prec, rngs)
    self.dtype = prec.dtype

  @property
  def unvoiced(self) -> int:
    return self.f0_bins

  @property
  def unknown_style(self) -> int:
    return self.style_vocab

  def column(self, f0, energy, style, present) -> jax.Array:
    """The prosody column's embedding (B, T, W), zero where not present."""
    x = self.f0_in(f0) + self.energy_in(energy) + self.style_in(style)
    return x * present[..., None].astype(x.dtype)

  def styled(self, h, style) -> jax.Array:
    return h + self.style_plan(style).astype(h.dtype)

  def planned(self, s, f0, energy) -> jax.Array:
    return (s + self.f0_plan(f0).astype(s.dtype)
            + self.energy_plan(energy).astype(s.dtype))

  def frame_logits(self, s):
    """(F0 bin, voicing, energy bin) logits of the frame ``s`` predicts."""
    return self.f0_head(s), self.voicing_head(s), self.energy_head(s)
