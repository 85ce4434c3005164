"""Stage-1 losses of the prosody stream, and the plan states stage 2 reads.

Row t's backbone state predicts frame t+1. With the stream on, its plan
(``ProsodyStream``) is teacher-forced with frame t+1's own tokens: the
style of its turn, then its F0 id and energy id. The frame streams are
trained on every target frame (voicing and energy everywhere, the F0 bin
on voiced frames only); the style head once per turn, at the row that
predicts the turn's first frame, where the turn's style is known.
"""

from __future__ import annotations

import jax.numpy as jnp

FIELDS = ("prosody_f0", "prosody_energy", "prosody_style", "prosody_mask")


def prosody_inputs(batch):
  """The prosody column of a batch (``CSM.embed_frames``'s argument)."""
  missing = [f for f in FIELDS if f not in batch]
  if missing:
    raise ValueError(f"the model has the prosody stream on but the batch "
                     f"lacks {missing}")
  return tuple(batch[f] for f in FIELDS)


def first_frame_weights(batch, audio_w):
  """(B, T-1): row t+1 is the first (trained) frame of a turn."""
  was_audio = jnp.any(batch["mask"][:, :-1, :-1], axis=-1)
  return audio_w * (~was_audio).astype(audio_w.dtype)


def prosody_terms(stream, h_prev, batch, audio_w, cross_entropy):
  """(plan states (B, T-1, W), stage-1 loss, style loss, metrics).

  ``cross_entropy(logits, targets, weights)`` -> (weighted mean loss,
  accuracy), the CSM loss's own.
  """
  f0 = batch["prosody_f0"][:, 1:]
  energy = batch["prosody_energy"][:, 1:]
  style = batch["prosody_style"][:, 1:]
  w = audio_w * batch["prosody_mask"][:, 1:].astype(audio_w.dtype)
  s = stream.styled(h_prev, style)
  f0_logits, v_logits, e_logits = stream.frame_logits(s)
  voiced = f0 < stream.unvoiced
  wv = w * voiced.astype(w.dtype)
  bins = jnp.minimum(f0, stream.f0_bins - 1)
  lf, af = cross_entropy(f0_logits, bins, wv)
  lv, av = cross_entropy(v_logits, voiced.astype(jnp.int32), w)
  le, ae = cross_entropy(e_logits, energy, w)
  near = (jnp.abs(jnp.argmax(f0_logits, -1) - bins) <= 1).astype(jnp.float32)
  ws = first_frame_weights(batch, audio_w) * (
      style < stream.unknown_style).astype(w.dtype)
  ls, acc_s = cross_entropy(stream.style_head(h_prev),
                            jnp.minimum(style, stream.style_vocab - 1), ws)
  frame_loss = (lf + lv + le) / 3
  metrics = {
      "loss/prosody_f0": lf, "acc/prosody_f0": af,
      "acc/prosody_f0_within1": jnp.sum(near * wv) / jnp.maximum(
          jnp.sum(wv), 1.0),
      "loss/prosody_voicing": lv, "acc/prosody_voicing": av,
      "loss/prosody_energy": le, "acc/prosody_energy": ae,
      "loss/prosody_style": ls, "acc/prosody_style": acc_s,
      "loss/prosody": frame_loss, "frames/prosody_style": jnp.sum(ws),
  }
  return stream.planned(s, f0, energy), frame_loss, ls, metrics
