"""CSM loss with the dual memory, and the conversational loss terms.

``memory_csm_loss`` computes the memory of an example's earlier turns
(``memory.memory_from_turns`` over the batch's ``memory_*`` fields),
prefixes it to the example and takes the plain ``csm_loss`` (the research
plan's reconstruction term ``mse_loss(pred.audio, target.audio)`` is the
token cross-entropy of every codebook here). Three terms are added, each
with its weight in ``model.memory`` and off at 0 (docs/memory.md):

  semantic   1 - cos(semantic_head(mean target-audio state), the target
             turn's semantic vector)
  dynamics   | dynamics_head([mean target-audio state, prosodic readout])
               - (features(target) - features(previous turn)) |^2, averaged
             over the prosody features: the change of prosody from the
             previous turn, predicted from the turn and the memory
  character  -log sum_{k: same speaker} softmax_k(cos(e, e_k) / tau): the
             voice embedding e = speaker_head(mean target-audio state) must
             be nearer its own speaker's earlier turns e_k in the memory
             window than the other speakers' turns

Batch fields (``data.examples.memory_rows.memory_batch_spec``): the K memory
turns' rows ``memory_audio_tokens`` (B, K, R, N), ``memory_text_tokens``,
``memory_mask``, ``memory_valid`` (B, K), their ``memory_features`` (B, K,
F) with ``memory_features_present`` and ``memory_speaker`` (B, K); the
target turn's ``memory_target_rows`` (B, T), ``memory_target_semantic`` (B,
128), ``memory_target_features`` (B, F), ``memory_target_features_present``
and ``memory_target_speaker`` (B,).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from csm_jax.model import memory as memory_lib
from csm_jax.model.loss import csm_loss


class _Tap:
  """The model, recording the backbone states ``csm_loss`` computes.

  The loss terms read the same states the audio loss trains (no second
  backbone pass); every other attribute is the model's own.
  """

  def __init__(self, model):
    self._model = model
    self.h = None

  def __getattr__(self, name):
    return getattr(self._model, name)

  def __call__(self, *args, **kwargs):
    h, logits = self._model(*args, **kwargs)
    self.h = h
    return h, logits

  def backbone_hidden(self, *args, **kwargs):
    self.h = self._model.backbone_hidden(*args, **kwargs)
    return self.h


def memory_turns(batch) -> dict:
  """The memory turns of a batch in ``memory.memory_from_turns``' fields."""
  return {"audio_tokens": batch["memory_audio_tokens"],
          "text_tokens": batch["memory_text_tokens"],
          "mask": batch["memory_mask"], "valid": batch["memory_valid"],
          "features": batch["memory_features"],
          "features_present": batch["memory_features_present"]}


def _unit(x, eps=1e-6):
  # rsqrt(|x|^2 + eps^2), not x / max(|x|, eps): the norm's gradient at an
  # all-zero vector (an empty memory turn) is NaN even where masked.
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.sum(jnp.square(x), -1, keepdims=True)
                           + eps * eps)


def _masked_mean(values, weights):
  w = weights.astype(jnp.float32)
  return jnp.sum(values * w) / jnp.maximum(jnp.sum(w), 1.0), jnp.sum(w)


def semantic_term(mem, pooled, batch):
  """(loss, examples) of the semantic alignment term."""
  target = batch["memory_target_semantic"].astype(jnp.float32)
  has = jnp.linalg.norm(target, axis=-1) > 0
  has &= jnp.any(batch["memory_target_rows"], axis=-1)
  pred = mem.semantic_head(pooled)
  cos = jnp.sum(_unit(pred) * _unit(target), axis=-1)
  return _masked_mean(1.0 - cos, has)


def dynamics_term(mem, pooled, readout, batch):
  """(loss, examples, zero-change baseline) of the dynamics term.

  The previous turn is the newest memory turn; examples where it or the
  target has no prosody features do not count.
  """
  prev = batch["memory_features"][:, -1].astype(jnp.float32)
  cur = batch["memory_target_features"].astype(jnp.float32)
  ok = (batch["memory_features_present"][:, -1]
        & batch["memory_valid"][:, -1]
        & batch["memory_target_features_present"]
        & jnp.any(batch["memory_target_rows"], axis=-1))
  b = pooled.shape[0]
  x = jnp.concatenate([pooled, readout.reshape(b, -1)], axis=-1)
  pred = mem.dynamics_head(x).astype(jnp.float32)
  real = cur - prev
  err = jnp.mean(jnp.square(pred - real), axis=-1)
  loss, n = _masked_mean(err, ok)
  base, _ = _masked_mean(jnp.mean(jnp.square(real), axis=-1), ok)
  return loss, n, base


def character_term(mem, pooled, turn_pooled, batch, temperature: float):
  """(loss, examples, accuracy) of the character consistency term.

  Counts where the memory window holds the target speaker's earlier turns
  and another speaker's (one speaker alone gives nothing to tell apart).
  """
  e = _unit(mem.speaker_head(pooled))                  # (B, E)
  ek = _unit(mem.speaker_head(turn_pooled))            # (B, K, E)
  valid = batch["memory_valid"] & jnp.any(batch["memory_mask"][..., :-1],
                                          axis=(-1, -2))
  same = (batch["memory_speaker"] == batch["memory_target_speaker"][:, None])
  pos, neg = valid & same, valid & ~same
  ok = (jnp.any(pos, -1) & jnp.any(neg, -1)
        & jnp.any(batch["memory_target_rows"], axis=-1))
  logits = jnp.einsum("be,bke->bk", e, ek) / temperature
  logits = jnp.where(valid, logits, -1e9)
  log_all = jax.nn.logsumexp(logits, axis=-1)
  log_pos = jax.nn.logsumexp(jnp.where(pos, logits, -1e9), axis=-1)
  loss, n = _masked_mean(jnp.where(ok, log_all - log_pos, 0.0), ok)
  hit = jnp.take_along_axis(pos, jnp.argmax(logits, -1)[:, None], 1)[:, 0]
  acc, _ = _masked_mean(hit.astype(jnp.float32), ok)
  return loss, n, acc


def memory_csm_loss(model, batch, rng, decoder_fraction: float,
                    text_loss_weight: float, mem_cfg, **csm_kwargs):
  """(total, metrics): ``csm_loss`` with the memory prefix, plus the terms.

  ``mem_cfg`` is ``config.model.memory`` (the gradient depth, the term
  weights); ``csm_kwargs`` go to ``csm_loss`` unchanged.
  """
  mem = model.memory
  state, turn_pooled = memory_lib.memory_from_turns(
      model, memory_turns(batch), int(mem_cfg.grad_turns))
  tap = _Tap(model)
  total, metrics = csm_loss(tap, batch, rng, decoder_fraction,
                            text_loss_weight, prefix=mem.prefix(state),
                            **csm_kwargs)
  metrics["memory/turns"] = jnp.mean(state.turns.astype(jnp.float32))
  for name in ("semantic", "prosodic"):
    bank = getattr(mem, name)
    if not bank.slots:   # the bank is off: nothing to log
      continue
    metrics[f"memory/{name}_norm"] = jnp.mean(
        jnp.linalg.norm(getattr(state, name), axis=-1))
    metrics[f"memory/{name}_gamma_mean"] = jnp.mean(bank.gamma())
  weights = {k: float(mem_cfg[f"{k}_weight"])
             for k in ("semantic", "dynamics", "character")}
  if not any(weights.values()):
    return total, metrics
  pooled = memory_lib.pooled_mean(tap.h, batch["memory_target_rows"])
  if weights["semantic"]:
    loss, n = semantic_term(mem, pooled, batch)
    metrics["loss/semantic"], metrics["memory/semantic_examples"] = loss, n
    total = total + weights["semantic"] * loss
  if weights["dynamics"]:
    readout = mem.prosodic.readout(state.prosodic, state.turns)
    loss, n, base = dynamics_term(mem, pooled, readout, batch)
    metrics["loss/dynamics"], metrics["memory/dynamics_examples"] = loss, n
    metrics["memory/dynamics_zero_change"] = base
    total = total + weights["dynamics"] * loss
  if weights["character"]:
    loss, n, acc = character_term(mem, pooled, turn_pooled, batch,
                                  float(mem_cfg.character_temperature))
    metrics["loss/character"], metrics["memory/character_examples"] = loss, n
    metrics["acc/character"] = acc
    total = total + weights["character"] * loss
  return total, metrics


def memory_flops(config, batch_size: int) -> float:
  """Matmul FLOPs the memory adds to a training step.

  The backbone over K memory turns of R rows each: forward only for the
  turns read without gradient, forward + backward (3x) for the newest
  ``grad_turns``; the banks and heads are negligible beside it.
  """
  from csm_jax.model.transformer import TransformerSpec  # pylint: disable=g-import-not-at-top
  m = config.model
  mem = m.memory
  spec = TransformerSpec.from_config(m.backbone, m, "embed")
  r = mem.turn_rows
  dense = spec.param_count() - spec.width * (2 * spec.depth + 1)
  attn = 2 * 2 * spec.depth * spec.heads * spec.dim_per_head * (r / 2)
  per_turn = batch_size * r * (2 * dense + attn)
  grad = min(mem.grad_turns, mem.turns)
  return per_turn * ((mem.turns - grad) + 3.0 * grad)
