"""CSM training loss with compute amortization.

Codebook 0 is trained on every target frame; the depth decoder only on a
random subset of target frames per example (``decoder_frame_fraction``,
Sesame: 1/16), drawn from the step's RNG. The subset has a static size so the
step compiles once; examples with fewer target frames pad it with zero weight.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from csm_jax.parallel.sharding import constrain


def decoder_frames_per_example(seq_len: int, fraction: float) -> int:
  return max(1, math.ceil(fraction * (seq_len - 1)))


def _ce(logits, targets, weights):
  """Weighted mean cross-entropy and accuracy (float32 throughout)."""
  logits = logits.astype(jnp.float32)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  acc = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  denom = jnp.maximum(jnp.sum(weights), 1.0)
  return jnp.sum(ce * weights) / denom, jnp.sum(acc * weights) / denom


def target_weights(batch):
  """(B, T-1) weights: does row t's state predict a trained frame at t+1?"""
  seg = batch["segment_ids"]
  same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
  is_audio = jnp.any(batch["mask"][:, 1:, :-1], axis=-1)
  audio_w = same & is_audio & batch["loss_mask"][:, 1:]
  text_w = same & batch["mask"][:, 1:, -1] & ~is_audio
  return audio_w.astype(jnp.float32), text_w.astype(jnp.float32)


def csm_loss(model, batch, rng, decoder_fraction: float,
             text_loss_weight: float = 0.0, cond=None, prefix=None):
  """Returns (total loss, metrics) for one batch."""
  n = model.n_codebooks
  h, logits0 = model(batch["audio_tokens"], batch["text_tokens"],
                     batch["mask"], batch["positions"], batch["segment_ids"],
                     cond=cond, prefix=prefix)
  h_prev = h[:, :-1]
  targets = batch["audio_tokens"][:, 1:]  # (B, T-1, N)
  audio_w, text_w = target_weights(batch)
  loss0, acc0 = _ce(logits0[:, :-1], targets[..., 0], audio_w)
  metrics = {"loss/cb0": loss0, "acc/cb0": acc0,
             "frames/target": jnp.sum(audio_w)}

  # Depth decoder on a random subset of target frames, per example.
  b, tm1 = audio_w.shape
  k = decoder_frames_per_example(tm1 + 1, decoder_fraction)
  k = min(k, tm1)
  noise = jax.random.uniform(rng, (b, tm1))
  score = jnp.where(audio_w > 0, noise, -1.0 - noise)
  _, idx = jax.lax.top_k(score, k)  # (B, k)
  sel_w = jnp.take_along_axis(audio_w, idx, axis=1)
  sel_h = jnp.take_along_axis(h_prev, idx[..., None], axis=1)
  sel_codes = jnp.take_along_axis(targets, idx[..., None], axis=1)
  sel_h = constrain(sel_h, ("batch", "seq", "act_embed"))
  logits = model.decoder_logits(sel_h.reshape(b * k, -1),
                                sel_codes.reshape(b * k, n))
  logits = logits.reshape(b, k, n - 1, -1)
  dec_losses = []
  for i in range(1, n):
    li, ai = _ce(logits[:, :, i - 1], sel_codes[..., i], sel_w)
    metrics[f"loss/cb{i}"] = li
    metrics[f"acc/cb{i}"] = ai
    dec_losses.append(li)
  dec_loss = jnp.mean(jnp.stack(dec_losses))
  metrics["loss/decoder"] = dec_loss
  metrics["frames/decoder"] = jnp.sum(sel_w)
  # Every codebook weighs the same in the total, as in a flat prediction.
  total = (loss0 + (n - 1) * dec_loss) / n
  if text_loss_weight > 0 and model.text_head is not None:
    text_logits = model.text_head(h_prev)
    lt, at = _ce(text_logits, batch["text_tokens"][:, 1:], text_w)
    metrics["loss/text"] = lt
    metrics["acc/text"] = at
    total = total + text_loss_weight * lt
  metrics["loss/audio"] = (loss0 + (n - 1) * dec_loss) / n
  return total, metrics


def count_flops(config, batch_size: int) -> float:
  """Matmul FLOPs per training step (forward + backward = 3x forward).

  Backbone: 2 * params * tokens plus attention scores; the decoder only on
  the frames it trains on (N positions each); heads on their frames.
  """
  from csm_jax.model.transformer import TransformerSpec  # pylint: disable=g-import-not-at-top
  m = config.model
  t = config.data.seq_len
  bs = TransformerSpec.from_config(m.backbone, m, "embed")
  ds = TransformerSpec.from_config(m.decoder, m, "dec_embed")
  n = m.n_codebooks

  def stack_flops(spec, tokens, ctx):
    dense = spec.param_count() - spec.width * (2 * spec.depth + 1)
    attn = 2 * 2 * spec.depth * spec.heads * spec.dim_per_head * ctx
    return tokens * (2 * dense + attn)

  ctx_b = min(t, m.audio_window) / 2  # average causal context per query
  backbone = stack_flops(bs, batch_size * t, ctx_b)
  heads = 2 * batch_size * t * bs.width * m.audio_vocab
  if m.text_loss_weight > 0:
    heads += 2 * batch_size * t * bs.width * m.text_vocab
  frames = batch_size * decoder_frames_per_example(t, m.decoder_frame_fraction)
  decoder = stack_flops(ds, frames * n, n / 2)
  decoder += 2 * frames * n * bs.width * ds.width  # projection
  decoder += 2 * frames * (n - 1) * ds.width * m.audio_vocab
  return 3.0 * (backbone + heads + decoder)
