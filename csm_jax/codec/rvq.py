"""Residual vector quantization with EMA codebooks, k-means init and dead-code restarts.

Codebooks are not trained by gradients: ``ResidualVQ.__call__(..., update=True)``
mutates the ``CodebookState`` variables (EMA cluster sizes and embedding sums
with Laplace smoothing), so the trainer carries them like any other non-Param
state. The encoder receives gradients through the straight-through estimator
and the commitment loss. ``SplitQuantizer`` adds Mimi's separate semantic
level 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.codec.conv import Linear
from csm_jax.config import codec as cfg

sg = jax.lax.stop_gradient


class CodebookState(nnx.Variable):
  """Quantizer state updated by EMA / k-means rather than by the optimizer."""


def nearest(r, codebook):
  """Index of the closest codebook row (squared L2) for each row of r."""
  d = (jnp.sum(codebook ** 2, -1)[None, :] - 2.0 * r @ codebook.T)
  return jnp.argmin(d, axis=-1).astype(jnp.int32)


def _sample_rows(key, r, w, k):
  """k rows of r drawn with probability proportional to weights w."""
  total = w.sum()
  p = jnp.where(total > 0, w / jnp.maximum(total, 1e-12), 1.0 / w.shape[0])
  return r[jax.random.choice(key, r.shape[0], (k,), p=p)]


def _counts(codes, w, k):
  onehot = jax.nn.one_hot(codes, k, dtype=jnp.float32) * w[:, None]
  return onehot, onehot.sum(0)


def kmeans(r, w, key, k, iters):
  """Weighted Lloyd's k-means; returns (centroids, counts, sums)."""
  cent = _sample_rows(key, r, w, k)

  def body(cent, _):
    onehot, cnt = _counts(nearest(r, cent), w, k)
    sums = onehot.T @ r
    return jnp.where(cnt[:, None] > 0, sums / jnp.maximum(cnt, 1e-9)[:, None],
                     cent), None

  cent, _ = jax.lax.scan(body, cent, None, length=iters)
  _, cnt = _counts(nearest(r, cent), w, k)
  return cent, cnt, cent * cnt[:, None]


class ResidualVQ(nnx.Module):
  """``levels`` codebooks of ``codebook_size`` x ``codebook_dim`` applied to
  successive residuals of a projection of the input."""

  def __init__(self, dim: int, levels: int, q, *, rngs: nnx.Rngs,
               dtype=jnp.float32, param_dtype=jnp.float32):
    k, d = q.codebook_size, q.codebook_dim
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype, use_bias=False)
    self.in_proj = Linear(dim, d, axes=("embed", "code_dim"), **kw)
    self.out_proj = Linear(d, dim, axes=("code_dim", "embed"), **kw)
    cb = jax.random.normal(rngs.params(), (levels, k, d), jnp.float32)
    axes = (None, "codebook", "code_dim")
    # EMA statistics stay float32 whatever the compute dtype.
    self.codebook = CodebookState(cb, logical_axes=axes)
    self.embed_sum = CodebookState(cb, logical_axes=axes)
    self.cluster_size = CodebookState(jnp.ones((levels, k), jnp.float32),
                                      logical_axes=(None, "codebook"))
    # Without k-means initialisation the random codebooks count as
    # initialised from the start (codec configs saved before the switch
    # existed had it on).
    self.initialized = CodebookState(
        jnp.full((), not cfg.option(q, "rvq.kmeans_init"), jnp.bool_),
        logical_axes=())
    self.levels, self.codebook_size, self.codebook_dim = levels, k, d
    self.decay, self.eps = q.ema_decay, q.epsilon
    self.threshold, self.kmeans_iters = q.dead_code_threshold, q.kmeans_iters
    # k-means from the first batch alone (0), or from the first
    # ``kmeans_init_vectors`` input vectors gathered over the first steps:
    # a CPU batch holds fewer vectors than a codebook has codes.
    self.init_vectors = int(cfg.option(q, "rvq.kmeans_init_vectors"))
    if self.init_vectors:
      self.init_buffer = CodebookState(
          jnp.zeros((self.init_vectors, d), jnp.float32),
          logical_axes=(None, "code_dim"))
      self.buffered = CodebookState(jnp.zeros((), jnp.int32),
                                    logical_axes=())

  def _gathered_init(self, flat, key):
    """Adds this batch's input vectors to the buffer; once it is full (and
    the codebooks are not initialised yet) fits every level by k-means on
    the buffer's successive residuals. Returns (ready, codebooks, cluster
    sizes, embedding sums) for the levels to start from when ready."""
    n, rows = self.init_vectors, min(flat.shape[0], self.init_vectors)
    filled = self.buffered[...]
    start = jnp.minimum(filled, n - rows)
    buf = jax.lax.dynamic_update_slice(self.init_buffer[...],
                                       sg(flat[:rows]), (start, 0))
    ready = (filled + rows >= n) & ~self.initialized[...]
    k, ones = self.codebook_size, jnp.ones((n,), jnp.float32)

    def fit():
      def level(r, key):
        cent, cnt, sums = kmeans(r, ones, key, k, self.kmeans_iters)
        return r - cent[nearest(r, cent)], (cent, cnt, sums)
      _, books = jax.lax.scan(level, buf, jax.random.split(key,
                                                           self.levels))
      return books

    def keep():
      return (self.codebook[...], self.cluster_size[...],
              self.embed_sum[...])
    books = jax.lax.cond(ready, fit, keep)
    self.init_buffer = self.init_buffer.replace(buf)
    self.buffered = self.buffered.replace(jnp.minimum(filled + rows, n))
    return ready, books

  # -- training --------------------------------------------------------------
  def _ema(self, r, w, codes, cb, cs, es, key):
    k, decay = self.codebook_size, self.decay
    onehot, cnt = _counts(codes, w, k)
    cs2 = decay * cs + (1 - decay) * cnt
    es2 = decay * es + (1 - decay) * (onehot.T @ r)
    n = cs2.sum()
    smoothed = (cs2 + self.eps) / (n + k * self.eps) * n
    cb2 = es2 / smoothed[:, None]
    # Restart codes whose EMA count fell below `threshold` times the mean
    # count at random current residuals, so they land where the data is.
    # Relative to the mean so one setting fits any batch size / codebook.
    floor = self.threshold * n / k
    dead = cs2 < floor
    fresh = _sample_rows(key, r, w, k)
    cb2 = jnp.where(dead[:, None], fresh, cb2)
    es2 = jnp.where(dead[:, None], fresh * floor, es2)
    cs2 = jnp.where(dead, floor, cs2)
    # A level that no example uses in this batch (quantizer dropout) keeps
    # its statistics unchanged.
    keep = w.sum() <= 0
    return tuple(jnp.where(keep, old, new)
                 for old, new in ((cb, cb2), (cs, cs2), (es, es2)))

  def __call__(self, x, level_mask=None, *, rng=None, update: bool = False,
               bypass=None):
    """Quantizes x (B, F, dim) with all levels, level_mask (B, levels) in
    {0, 1} switching levels off per example (quantizer dropout); examples
    whose ``bypass`` (B,) is 1 pass their projected latent on unquantized
    (codes, losses and codebook updates are computed for them as for any).

    Returns (quantized (B, F, dim) with straight-through gradient,
    codes (B, F, levels) int32, aux dict: commitment loss, per-level usage and
    perplexity). With ``update`` the codebooks are k-means initialised on the
    first call and EMA-updated afterwards; this needs ``rng``.
    """
    b, f, _ = x.shape
    z = self.in_proj(x).astype(jnp.float32)
    flat = z.reshape(b * f, self.codebook_dim)
    if level_mask is None:
      level_mask = jnp.ones((b, self.levels), jnp.float32)
    weights = jnp.repeat(level_mask.astype(jnp.float32), f, axis=0).T
    if update and rng is None:
      raise ValueError("codebook updates need an rng")
    keys = jax.random.split(rng if rng is not None else jax.random.key(0),
                            (self.levels, 2))
    initialized = self.initialized[...]
    k = self.codebook_size
    codebooks = (self.codebook[...], self.cluster_size[...],
                 self.embed_sum[...])
    gathered = update and self.init_vectors > 0
    if gathered:
      ready, codebooks = self._gathered_init(
          flat, jax.random.fold_in(keys[0, 0], 1))
      initialized = initialized | ready

    def body(residual, xs):
      cb, cs, es, w, key = xs
      r = sg(residual)
      if update and not gathered:
        cb, cs, es = jax.lax.cond(
            initialized, lambda: (cb, cs, es),
            lambda: kmeans(r, w, key[0], k, self.kmeans_iters))
      codes = nearest(r, cb)
      q = cb[codes]
      denom = jnp.maximum(w.sum() * self.codebook_dim, 1.0)
      commit = jnp.sum(w[:, None] * (residual - q) ** 2) / denom
      _, cnt = _counts(codes, w, k)
      p = cnt / jnp.maximum(cnt.sum(), 1e-9)
      ppl = jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(p), 0.0)))
      usage = jnp.mean((cnt > 0).astype(jnp.float32))
      if update:
        cb, cs, es = self._ema(r, w, codes, cb, cs, es, key[1])
      qw = q * w[:, None]
      return residual - qw, (qw, codes, cb, cs, es, commit, usage, ppl)

    _, (qs, codes, cb, cs, es, commit, usage, ppl) = jax.lax.scan(
        body, flat, (*codebooks, weights, keys))
    if gathered:
      # Until the buffer is full the codebooks stay as they are (random):
      # EMA updates of codes about to be replaced would be wasted.
      cb, cs, es = (jnp.where(initialized, new, old) for new, old in
                    zip((cb, cs, es), codebooks))
    if update:
      # Replacing the Variables (rather than mutating them in place) works
      # even when this module was merged inside a grad trace from state that
      # lives one trace level up, which in-place mutation refuses.
      self.codebook = self.codebook.replace(cb)
      self.cluster_size = self.cluster_size.replace(cs)
      self.embed_sum = self.embed_sum.replace(es)
      self.initialized = self.initialized.replace(
          initialized if gathered else jnp.ones((), jnp.bool_))
    total = qs.sum(0)
    step = sg(total - flat)
    if bypass is not None:
      step = step * (1.0 - jnp.repeat(bypass.astype(jnp.float32), f)[:, None])
    z_q = flat + step  # straight-through estimator
    out = self.out_proj(z_q.reshape(b, f, -1))
    codes = codes.T.reshape(b, f, self.levels)
    # The first level's code vector, straight-through to the encoder: what
    # a head reading level 1 alone (the phonetic head) trains on.
    first = (flat + sg(qs[0] - flat)).reshape(b, f, -1)
    return out, codes, {"commitment": commit, "usage": usage,
                        "perplexity": ppl, "first_level": first}

  # -- inference -------------------------------------------------------------
  def encode(self, x, n_levels: int | None = None):
    """(B, F, dim) -> codes (B, F, n_levels) int32, greedy per level."""
    n = self.levels if n_levels is None else n_levels
    b, f, _ = x.shape
    flat = self.in_proj(x).astype(jnp.float32).reshape(b * f, -1)

    def body(residual, cb):
      codes = nearest(residual, cb)
      return residual - cb[codes], codes

    _, codes = jax.lax.scan(body, flat, self.codebook[...][:n])
    return codes.T.reshape(b, f, n)

  def decode(self, codes):
    """codes (B, F, n) with n <= levels -> (B, F, dim); levels >= n unused."""
    n = codes.shape[-1]
    q = self.codebook[...][jnp.arange(n), codes]  # (B, F, n, D)
    return self.out_proj(q.sum(-2))


class SplitQuantizer(nnx.Module):
  """Mimi-style split RVQ: optional semantic level 0 with its own projections
  plus an acoustic RVQ for the remaining levels; outputs are summed."""

  def __init__(self, dim: int, c, *, rngs, dtype=jnp.float32,
               param_dtype=jnp.float32):
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=param_dtype)
    self.n_semantic = 1 if c.semantic.enabled else 0
    self.levels = c.rvq.levels
    self.codebook_size = c.rvq.codebook_size
    self.semantic = (ResidualVQ(dim, 1, c.rvq, **kw) if self.n_semantic
                     else None)
    self.acoustic = ResidualVQ(dim, self.levels - self.n_semantic, c.rvq, **kw)

  def __call__(self, x, level_mask=None, *, rng=None, update=False,
               bypass=None):
    """Like ResidualVQ.__call__; aux also has "semantic" (level-0 output);
    "first_level" is the semantic level's code vector when there is one."""
    if level_mask is None:
      level_mask = jnp.ones((x.shape[0], self.levels), jnp.float32)
    rngs = jax.random.split(rng, 2) if rng is not None else (None, None)
    out, codes, aux = self.acoustic(x, level_mask[:, self.n_semantic:],
                                    rng=rngs[1], update=update, bypass=bypass)
    if self.semantic is None:
      return out, codes, {**aux, "semantic": None}
    s_out, s_codes, s_aux = self.semantic(x, level_mask[:, :1], rng=rngs[0],
                                          update=update, bypass=bypass)
    merged = {k: jnp.concatenate([s_aux[k], aux[k]]) for k in aux
              if k != "first_level"}
    merged["first_level"] = s_aux["first_level"]
    return (out + s_out, jnp.concatenate([s_codes, codes], -1),
            {**merged, "semantic": s_out})

  def encode(self, x, n_levels=None):
    n = self.levels if n_levels is None else n_levels
    if self.semantic is None:
      return self.acoustic.encode(x, n)
    s = self.semantic.encode(x, 1)
    if n == 1:
      return s
    return jnp.concatenate([s, self.acoustic.encode(x, n - 1)], -1)

  def decode(self, codes):
    if self.semantic is None:
      return self.acoustic.decode(codes)
    out = self.semantic.decode(codes[..., :1])
    if codes.shape[-1] > 1:
      out = out + self.acoustic.decode(codes[..., 1:])
    return out
