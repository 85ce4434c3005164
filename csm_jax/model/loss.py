"""CSM training loss with compute amortization.

Codebook 0 is trained on every target frame; the depth decoder only on a
random subset of target frames per example (``decoder_frame_fraction``,
Sesame: 1/16), drawn from the step's RNG. The subset has a static size so the
step compiles once; examples with fewer target frames pad it with zero weight.
Optionally the decoder's codebooks are trained hierarchically as well
(``sample_levels``): the first ones every step, a random few of the rest.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from csm_jax.model.prosody_loss import prosody_inputs, prosody_terms
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


def truncate_levels(mask: jax.Array, rng: jax.Array,
                    probability: float) -> jax.Array:
  """The column mask with, for a random share of examples, each audio row
  cut to a random prefix of its levels (1..N), drawn once per example.

  Trains the backbone to read the partial frames that generation with
  fewer levels feeds back; targets are untouched (every level is still
  predicted), only what the backbone sees of past frames changes.
  """
  b, _, cols = mask.shape
  n = cols - 1
  k_cut, k_keep = jax.random.split(rng)
  cut = jax.random.uniform(k_cut, (b,)) < probability
  keep = jax.random.randint(k_keep, (b,), 1, n + 1)
  levels = jnp.where(cut, keep, n)
  audio = mask[..., :n] & (jnp.arange(n)[None, None, :] < levels[:, None, None])
  return jnp.concatenate([audio, mask[..., n:]], axis=-1)


def sample_levels(rng, n_codebooks: int, critical: int,
                  detail_per_step: int) -> jax.Array:
  """The decoder codebooks (1..N-1) trained this step, sorted.

  All of them when ``critical`` is 0; else 1..critical-1 plus
  ``detail_per_step`` distinct draws from critical..N-1.
  """
  if not critical:
    return jnp.arange(1, n_codebooks, dtype=jnp.int32)
  noise = jax.random.uniform(rng, (n_codebooks - critical,))
  _, picked = jax.lax.top_k(noise, detail_per_step)
  detail = jnp.sort(picked.astype(jnp.int32) + critical)
  return jnp.concatenate([jnp.arange(1, critical, dtype=jnp.int32), detail])


def csm_loss(model, batch, rng, decoder_fraction: float,
             text_loss_weight: float = 0.0, cond=None, prefix=None,
             critical_codebooks: int = 0, detail_per_step: int = 0,
             level_dropout: float = 0.0,
             prosody_weights: tuple[float, float] = (1.0, 0.2),
             advance_weight: float = 1.0):
  """Returns (total loss, metrics) for one batch.

  With ``critical_codebooks`` C > 0 (hierarchical codebooks), codebooks
  1..C-1 are trained every step and ``detail_per_step`` of the detail
  codebooks C..N-1 are drawn per step; the detail loss is scaled so that the
  total is an unbiased estimate of the all-codebook total.

  With the prosody stream (``model.prosody``), codebook 0 and the decoder
  read the teacher-forced plan states (``prosody_loss``) and the stage-1
  losses are added with ``prosody_weights`` (frame streams, style).

  With the aligned text stream (``batch["advance"]``) the advance head's
  cross-entropy is added with ``advance_weight``.
  """
  n = model.n_codebooks
  seen = batch["mask"]
  if level_dropout > 0:
    seen = truncate_levels(seen, jax.random.fold_in(rng, 2), level_dropout)
  audio_w, text_w = target_weights(batch)
  targets = batch["audio_tokens"][:, 1:]  # (B, T-1, N)
  stream = getattr(model, "prosody", None)
  if stream is None:
    h, logits0 = model(batch["audio_tokens"], batch["text_tokens"],
                       seen, batch["positions"], batch["segment_ids"],
                       cond=cond, prefix=prefix)
    h_prev = h[:, :-1]
    logits0 = logits0[:, :-1]
    state = h_prev
  else:
    h = model.backbone_hidden(batch["audio_tokens"], batch["text_tokens"],
                              seen, batch["positions"], batch["segment_ids"],
                              cond, prefix, prosody_inputs(batch))
    h_prev = h[:, :-1]
    state, frame_loss, style_loss, p_metrics = prosody_terms(
        stream, h_prev, batch, audio_w, _ce)
    logits0 = model.codebook0_head(state)
  loss0, acc0 = _ce(logits0, targets[..., 0], audio_w)
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
  sel_h = jnp.take_along_axis(state, idx[..., None], axis=1)
  sel_codes = jnp.take_along_axis(targets, idx[..., None], axis=1)
  sel_h = constrain(sel_h, ("batch", "seq", "act_embed"))
  hierarchical = bool(critical_codebooks)
  levels = sample_levels(jax.random.fold_in(rng, 1), n, critical_codebooks,
                         detail_per_step)
  logits = model.decoder_logits(sel_h.reshape(b * k, -1),
                                sel_codes.reshape(b * k, n),
                                levels if hierarchical else None)
  logits = logits.reshape(b, k, levels.shape[0], -1)
  level_targets = jnp.take(sel_codes, levels, axis=2)
  dec_losses = []
  for j in range(levels.shape[0]):
    lj, aj = _ce(logits[:, :, j], level_targets[..., j], sel_w)
    dec_losses.append(lj)
    if not hierarchical or j < critical_codebooks - 1:
      # Position j is codebook j + 1 (the detail positions vary per step).
      metrics[f"loss/cb{j + 1}"] = lj
      metrics[f"acc/cb{j + 1}"] = aj
  if hierarchical:
    n_crit = critical_codebooks - 1
    detail = jnp.mean(jnp.stack(dec_losses[n_crit:]))
    metrics["loss/detail_sampled"] = detail
    dec_loss = (sum(dec_losses[:n_crit], jnp.zeros(()))
                + (n - critical_codebooks) * detail) / (n - 1)
  else:
    dec_loss = jnp.mean(jnp.stack(dec_losses))
  metrics["loss/decoder"] = dec_loss
  metrics["frames/decoder"] = jnp.sum(sel_w)
  # Every codebook weighs the same in the total, as in a flat prediction.
  total = (loss0 + (n - 1) * dec_loss) / n
  if text_loss_weight > 0 and model.text_head is not None:
    text_logits = model.text_head(h_prev)
    text = batch["text_tokens"]
    if text.ndim == 3:   # aligned stream: the row's own token
      text = text[..., 0]
    lt, at = _ce(text_logits, text[:, 1:], text_w)
    metrics["loss/text"] = lt
    metrics["acc/text"] = at
    total = total + text_loss_weight * lt
  metrics["loss/audio"] = (loss0 + (n - 1) * dec_loss) / n
  if getattr(model, "advance_head", None) is not None and "advance" in batch:
    adv = batch["advance"]
    w = ((adv >= 0) & (batch["segment_ids"] > 0)).astype(jnp.float32)
    la, aa = _ce(model.advance_head(h), jnp.maximum(adv, 0), w)
    metrics["loss/advance"] = la
    metrics["acc/advance"] = aa
    total = total + advance_weight * la
  if stream is not None:
    metrics.update(p_metrics)
    total = (total + prosody_weights[0] * frame_loss
             + prosody_weights[1] * style_loss)
  return total, metrics


def stack_products(spec, rows: int) -> list[tuple[int, int, int]]:
  """(rows, d_in, d_out) of every weight product of a transformer stack
  (``TransformerSpec``) applied to ``rows`` rows."""
  hd, w = spec.dim_per_head, spec.width
  q, kv = spec.heads * hd, spec.kv_heads * hd
  return [(rows, w, q), (rows, w, kv), (rows, w, kv), (rows, q, w),
          (rows, w, spec.mlp), (rows, w, spec.mlp), (rows, spec.mlp, w)
          ] * spec.depth


def _stacks(config):
  """The backbone's and the decoder's ``TransformerSpec`` of ``config``."""
  from csm_jax.model.transformer import TransformerSpec  # pylint: disable=g-import-not-at-top
  m = config.model
  return (TransformerSpec.from_config(m.backbone, m, "embed"),
          TransformerSpec.from_config(m.decoder, m, "dec_embed"))


def dense_products(config, batch_size: int) -> list[tuple[int, int, int]]:
  """(rows, d_in, d_out) of every weight product of a training step's
  forward pass: the backbone on every row, its heads, and the decoder on
  the frames it trains on (N positions each) with its projection and the
  codebook heads trained."""
  m = config.model
  t = config.data.seq_len
  bs, ds = _stacks(config)
  n = m.n_codebooks
  rows = batch_size * t
  out = stack_products(bs, rows) + [(rows, bs.width, m.audio_vocab)]
  if m.text_loss_weight > 0:
    out.append((rows, bs.width, m.text_vocab))
  frames = batch_size * decoder_frames_per_example(t, m.decoder_frame_fraction)
  out += stack_products(ds, frames * n)
  out.append((frames * n, bs.width, ds.width))  # projection
  heads_trained = (m.critical_codebooks - 1 + m.detail_codebooks_per_step
                   if m.critical_codebooks else n - 1)
  out += [(frames, ds.width, m.audio_vocab)] * heads_trained
  return out


def count_flops(config, batch_size: int) -> float:
  """Matmul FLOPs per training step (forward + backward = 3x forward).

  The weight products of ``dense_products`` plus the attention scores over
  each query's average causal context (the backbone's within its audio
  window, the decoder's over a frame's N positions).
  """
  m = config.model
  t = config.data.seq_len
  bs, ds = _stacks(config)
  n = m.n_codebooks

  def attention(spec, tokens, ctx):
    return tokens * 2 * 2 * spec.depth * spec.heads * spec.dim_per_head * ctx

  frames = batch_size * decoder_frames_per_example(t, m.decoder_frame_fraction)
  scores = (attention(bs, batch_size * t, min(t, m.audio_window) / 2)
            + attention(ds, frames * n, n / 2))
  dense = sum(2 * r * k * o for r, k, o in dense_products(config, batch_size))
  return 3.0 * (dense + scores)
