"""Token sampling: temperature, top-k, top-p, greedy; seeded and jittable.

``temperature`` may be a scalar or one value per codebook (broadcast by the
caller); temperature 0 means greedy. ``top_k`` 0 and ``top_p`` 1.0 disable
those filters. All shapes are static so the whole frame loop compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NEG_INF = -1e30


def filter_top_k(logits: jax.Array, k: int) -> jax.Array:
  """Keeps the k largest logits of the last axis (ties at the k-th kept)."""
  if k <= 0 or k >= logits.shape[-1]:
    return logits
  kth = jax.lax.top_k(logits, k)[0][..., -1:]
  return jnp.where(logits >= kth, logits, NEG_INF)


def filter_top_p(logits: jax.Array, p: float) -> jax.Array:
  """Keeps the smallest set of tokens whose probability mass reaches p."""
  if p >= 1.0:
    return logits
  order = jnp.argsort(-logits, axis=-1)
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  # A token stays if the mass *before* it is below p: the top token always
  # stays, and the token that crosses p is included.
  before = jnp.cumsum(probs, axis=-1) - probs
  keep_sorted = before < p
  keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1),
                             axis=-1)
  return jnp.where(keep, logits, NEG_INF)


def sample(logits: jax.Array, key: jax.Array, temperature, top_k: int = 0,
           top_p: float = 1.0) -> jax.Array:
  """Samples ids from logits (B, V); temperature (B,) or scalar.

  ``key`` is one key for the whole batch, or one key per row (B,): with
  per-row keys a row's draw depends on its own key and logits only, so an
  example samples the same tokens alone as inside any batch.
  """
  logits = logits.astype(jnp.float32)
  temperature = jnp.asarray(temperature, jnp.float32)
  greedy = jnp.argmax(logits, axis=-1)
  scaled = logits / jnp.maximum(temperature, 1e-6)[..., None]
  scaled = filter_top_k(scaled, top_k)
  scaled = filter_top_p(scaled, top_p)
  if key.ndim == 1:
    drawn = jax.vmap(lambda k, l: jax.random.categorical(k, l, axis=-1))(
        key, scaled)
  else:
    drawn = jax.random.categorical(key, scaled, axis=-1)
  return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)
