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
  # The k-th largest as the least of the top k: XLA:CPU turns top-k into its
  # fast TopK call only when all k values are read; reading the k-th alone
  # left a full sort (42 us for a row of 259 where TopK takes a few).
  kth = jnp.min(jax.lax.top_k(logits, k)[0], axis=-1, keepdims=True)
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


def draw_width(vocab: int, top_k: int = 0, top_p: float = 1.0) -> int:
  """How many logits of a row of ``vocab`` ``sample`` draws among: the k
  kept ones with top-k alone, else all of them (the width of its noise)."""
  return top_k if 0 < top_k < vocab and top_p >= 1.0 else vocab


def gumbel_noise(key: jax.Array, draws: int, rows: int,
                 width: int) -> jax.Array:
  """Gumbel noise (draws, rows, width) for ``draws`` calls of ``sample``.

  ``key`` is one key, or one per row (rows,): then row b's noise comes from
  key b alone, so an example draws the same alone as inside any batch. On
  CPU each call of the counter-based generator is a small loop of its own,
  so a frame draws the noise of all its codebooks in one call instead of
  one per codebook (docs/speed.md: 562 small copies per debug frame
  before, 83 after).
  """
  if key.ndim == 0:
    return jax.random.gumbel(key, (draws, rows, width))
  per_row = jax.vmap(lambda k: jax.random.gumbel(k, (draws, width)))(key)
  return jnp.swapaxes(per_row, 0, 1)


def derived_key(key: jax.Array, index: int) -> jax.Array:
  """A key independent of ``key``'s own draws (``fold_in``), one per row
  for per-row keys (B,)."""
  if key.ndim == 0:
    return jax.random.fold_in(key, index)
  return jax.vmap(lambda k: jax.random.fold_in(k, index))(key)


@jax.jit
def fold_rows(keys: jax.Array, index) -> jax.Array:
  """Each row's key (B,) folded with ``index``: the streaming loop's key
  for a chunk. Compiled once, where a fresh ``vmap`` per chunk retraced it
  (a millisecond and a half of a 4-frame chunk's budget on CPU); the keys
  are the same bits."""
  return jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, index)


def _categorical(key: jax.Array, logits: jax.Array) -> jax.Array:
  if key.ndim == 1:  # one key per row
    return jax.vmap(lambda k, l: jax.random.categorical(k, l, axis=-1))(
        key, logits)
  return jax.random.categorical(key, logits, axis=-1)


def sample(logits: jax.Array, key: jax.Array | None, temperature,
           top_k: int = 0, top_p: float = 1.0,
           noise: jax.Array | None = None) -> jax.Array:
  """Samples ids from logits (B, V); temperature (B,) or scalar.

  ``key`` is one key for the whole batch, or one key per row (B,): with
  per-row keys a row's draw depends on its own key and logits only, so an
  example samples the same tokens alone as inside any batch.

  With top-k alone the draw is among the k kept logits (B, k) instead of
  all V: the same distribution (up to ties at the k-th value), drawing k
  random numbers per row instead of V, which is most of the sampler's
  time on CPU (V = 2051 for CSM-1B).

  ``noise``: Gumbel noise (B, ``draw_width(V, top_k, top_p)``) drawn
  beforehand (``gumbel_noise``) instead of from ``key``; the draw is the
  Gumbel-max of the kept logits, the categorical draw itself.
  """
  logits = logits.astype(jnp.float32)
  temperature = jnp.asarray(temperature, jnp.float32)
  greedy = jnp.argmax(logits, axis=-1)
  scaled = logits / jnp.maximum(temperature, 1e-6)[..., None]
  if noise is None:
    choose = lambda l: _categorical(key, l)
  else:
    choose = lambda l: jnp.argmax(l + noise, axis=-1)
  if draw_width(logits.shape[-1], top_k, top_p) < logits.shape[-1]:
    values, ids = jax.lax.top_k(scaled, top_k)
    choice = choose(values)
    drawn = jnp.take_along_axis(ids, choice[..., None], axis=-1)[..., 0]
  else:
    drawn = choose(filter_top_p(filter_top_k(scaled, top_k), top_p))
  return jnp.where(temperature > 0, drawn, greedy).astype(jnp.int32)
