"""Optimizer and learning-rate schedule from ``config.train``.

AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``, and
global-norm clipping. Weight decay skips vectors (norm scales): decaying them
only pulls the normalization towards zero.
"""

from __future__ import annotations

import jax
import optax


def schedule(t, scale: float = 1.0) -> optax.Schedule:
  peak = t.lr * scale
  warmup = min(t.warmup_steps, max(t.steps - 1, 0))
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0 if warmup else peak, peak_value=peak,
      warmup_steps=warmup, decay_steps=max(t.steps, warmup + 1),
      end_value=peak * t.min_lr_ratio)


def _decay_mask(params):
  return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(t, scale: float = 1.0) -> optax.GradientTransformation:
  parts = []
  if t.grad_clip > 0:
    parts.append(optax.clip_by_global_norm(t.grad_clip))
  parts.append(optax.adamw(schedule(t, scale), b1=t.b1, b2=t.b2, eps=t.eps,
                           weight_decay=t.weight_decay, mask=_decay_mask))
  return optax.chain(*parts)
