"""Grouped-query attention and the asymmetric text/audio attention mask.

The research plan's "voice-text cross attention" lets audio rows see far back
(prosodic continuity) while text rows look locally (semantic precision). In
CSM's interleaved layout that is one causal mask whose window depends on the
*query's* row kind; ``layout_mask`` builds it as a pure function of the column
layout, segment ids (packing) and positions, so training, prefill and cached
decoding all share it.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.model import lora as lora_lib
from csm_jax.model.layers import Precision, Rope, apply_rope, param
from csm_jax.model.lora import LoraSpec
from csm_jax.parallel.sharding import constrain

PAD_SEGMENT = 0
PREFIX_SEGMENT = -1  # conditioning vectors prepended to a row; seen by all


def row_windows(column_mask: jax.Array, text_window: int,
                audio_window: int) -> jax.Array:
  """Per-row attention window from the frame layout.

  ``column_mask`` is (B, T, n_codebooks + 1) with the text column last. A row
  whose only present column is text is a text row (local window); every other
  row, audio frames included, gets the global audio window.
  """
  has_audio = jnp.any(column_mask[..., :-1], axis=-1)
  is_text = column_mask[..., -1] & ~has_audio
  return jnp.where(is_text, text_window, audio_window).astype(jnp.int32)


def layout_mask(q_index: jax.Array, q_segment: jax.Array, q_window: jax.Array,
                k_index: jax.Array, k_segment: jax.Array) -> jax.Array:
  """Boolean mask (B, 1, Tq, Tk): may query i attend to key j?

  Rules: same non-padding segment, causal (k <= q) and within the query's
  window (q - k < window). Prefix keys (segment -1) are visible to every
  non-padding query; prefix queries see earlier prefix keys only.
  """
  diff = q_index[:, :, None] - k_index[:, None, :]
  qs = q_segment[:, :, None]
  ks = k_segment[:, None, :]
  causal = diff >= 0
  local = causal & (diff < q_window[:, :, None]) & (qs == ks) & (qs > 0)
  prefix = (ks == PREFIX_SEGMENT) & (qs != PAD_SEGMENT) & (
      (qs > 0) | causal)
  return (local | prefix)[:, None, :, :]


def causal_mask(batch: int, length: int) -> jax.Array:
  idx = jnp.arange(length)
  return jnp.broadcast_to((idx[:, None] >= idx[None, :])[None, None],
                          (batch, 1, length, length))


def repeated_heads_attention(q, k, v, mask=None):
  """Softmax attention with each key/value head repeated for its queries.

  q (B, T, N, H), k and v (B, S, K, H) with K dividing N, mask (B, 1, T, S)
  or None; returns (B, T, N, H). The same function as
  ``jax.nn.dot_product_attention``'s XLA path (scale 1/sqrt(H), logits and
  softmax in f32, masked logits at its large negative). That path groups the
  N query heads as (K, N / K), and in a training step XLA:CPU then writes the
  softmax backward's (B, K, T, S, N / K) probabilities with the group axis
  minor, a strided copy that took 15% of the debug step; with the heads
  repeated every product keeps (B, N) as its batch axes and the copy goes
  (docs/speed.md). For full sequences only: repeating a decoding cache would
  copy it on every step.
  """
  h = q.shape[-1]
  g = q.shape[2] // k.shape[2]
  if g > 1:
    k, v = jnp.repeat(k, g, axis=2), jnp.repeat(v, g, axis=2)
  logits = jnp.einsum("btnh,bsnh->bnts", q, k,
                      preferred_element_type=jnp.float32)
  probs = _masked_probs(logits, mask, h).astype(v.dtype)
  return jnp.einsum("bnts,bsnh->btnh", probs, v)


def _masked_probs(logits, mask, head_dim: int):
  """f32 softmax of scaled ``logits`` where ``mask`` (or everywhere if None);
  masked keys get jax's large negative logit, as its XLA path does."""
  logits = logits * jnp.float32(1.0 / math.sqrt(head_dim))
  if mask is not None:
    logits = jnp.where(mask, logits, -0.7 * jnp.finfo(jnp.float32).max)
  return jax.nn.softmax(logits, axis=-1)


@dataclasses.dataclass(frozen=True)
class Band:
  """What a full sequence's mask is known to allow, for banded attention.

  Query i may see only keys in ``[i - window + 1, i]`` and the first
  ``prefix`` columns (``layout_mask`` with windows at most ``window``, a
  prefix of ``prefix`` rows). Static: it decides the blocks at trace time.
  """

  window: int
  prefix: int = 0


# 128-query blocks measured fastest in the debug train step (T 512, window
# 256, 64-wide heads), about 2% ahead of 64 and 96: smaller blocks skip
# more of the score matrix but pay more per-op overhead and key copies.
BAND_BLOCK = 128


def banded_attention(q, k, v, mask, band: Band, block: int | None = None):
  """``repeated_heads_attention`` computed over ``band``'s keys only.

  q (B, T, N, H), k and v (B, T, K, H), mask (B, 1, T, T) inside ``band``;
  returns (B, T, N, H). Queries go in blocks of ``block`` rows
  (``BAND_BLOCK``); each block's keys are the prefix and the band's columns
  from its first row's window start to its last row, so the causal upper
  triangle and everything beyond the window are never computed (at T 512
  and window 256 with 128-row blocks, 44% of the score matrix). Rows that
  see some key get exactly the dense values; a row that sees no key at all
  (padding) averages its block's keys instead of all keys, and nothing
  attends to it.
  """
  block = block or BAND_BLOCK
  # Heads-major layouts, keys with time minor, so each block reads
  # contiguous runs of them.
  qt = jnp.transpose(q, (0, 2, 1, 3))
  kt = jnp.transpose(k, (0, 2, 3, 1))
  vt = jnp.transpose(v, (0, 2, 1, 3))
  t, h, p = qt.shape[2], qt.shape[-1], band.prefix
  g = qt.shape[1] // kt.shape[1]
  if g > 1:  # once, not per block
    kt, vt = jnp.repeat(kt, g, axis=1), jnp.repeat(vt, g, axis=1)

  def attend(rows, keys):
    kb = jnp.concatenate([kt[..., i] for i in keys], axis=-1)
    vb = jnp.concatenate([vt[:, :, i] for i in keys], axis=2)
    mb = jnp.concatenate([mask[:, :, rows, i] for i in keys], axis=-1)
    logits = jnp.einsum("bnth,bnhs->bnts", qt[:, :, rows], kb,
                        preferred_element_type=jnp.float32)
    probs = _masked_probs(logits, mb, h).astype(vt.dtype)
    return jnp.einsum("bnts,bnsh->bnth", probs, vb)

  outs = []
  if p:
    outs.append(attend(slice(0, p), [slice(0, p)]))
  for r0 in range(p, t, block):
    r1 = min(t, r0 + block)
    lo = max(p, r0 - band.window + 1)
    lo = p + (lo - p) // block * block  # block-aligned key slices
    keys = ([slice(0, p)] if p else []) + [slice(lo, r1)]
    outs.append(attend(slice(r0, r1), keys))
  out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=2)
  return jnp.transpose(out, (0, 2, 1, 3))


class Attention(nnx.Module):
  """Grouped-query self-attention with RoPE and an optional KV cache."""

  def __init__(self, width: int, heads: int, kv_heads: int, head_dim: int,
               embed_axis: str, prec: Precision, rngs: nnx.Rngs,
               impl: str | None = None, lora: LoraSpec = LoraSpec()):
    std = 1.0 / math.sqrt(width)
    self.wq = param(rngs, (width, heads, head_dim),
                    (embed_axis, "heads", "head_dim"), prec, std=std)
    self.wk = param(rngs, (width, kv_heads, head_dim),
                    (embed_axis, "kv_heads", "head_dim"), prec, std=std)
    self.wv = param(rngs, (width, kv_heads, head_dim),
                    (embed_axis, "kv_heads", "head_dim"), prec, std=std)
    self.wo = param(rngs, (heads, head_dim, width),
                    ("heads", "head_dim", embed_axis), prec,
                    std=1.0 / math.sqrt(heads * head_dim))
    self.dtype = prec.dtype
    self.impl = impl
    # LoRA adapters (model.lora): on the flattened (width, heads * head_dim)
    # view of wq/wk/wv and the (heads * head_dim, width) view of wo.
    def adapter(name, d_in, d_out, axes):
      if not lora.wants(f"attn.{name}"):
        return None
      return lora_lib.adapter(d_in, d_out, axes, lora, prec.dtype, rngs)
    self.lora_q = adapter("q", width, heads * head_dim, (embed_axis, "heads"))
    self.lora_k = adapter("k", width, kv_heads * head_dim,
                          (embed_axis, "kv_heads"))
    self.lora_v = adapter("v", width, kv_heads * head_dim,
                          (embed_axis, "kv_heads"))
    self.lora_o = adapter("o", heads * head_dim, width, ("heads", embed_axis))
    self.lora_scale = lora.scale

  def __call__(self, x, rope: Rope, mask, cache=None,
               cache_index=None, band: Band | None = None):
    """``band``: the mask's known extent for a full sequence (``Band``),
    which lets the CPU path skip the keys outside it."""
    dt = self.dtype
    x = x.astype(dt)
    q = jnp.einsum("btd,dnh->btnh", x, self.wq[...].astype(dt))
    k = jnp.einsum("btd,dkh->btkh", x, self.wk[...].astype(dt))
    v = jnp.einsum("btd,dkh->btkh", x, self.wv[...].astype(dt))
    q = q + self._adapt(self.lora_q, x, q.shape)
    k = k + self._adapt(self.lora_k, x, k.shape)
    v = v + self._adapt(self.lora_v, x, v.shape)
    q = apply_rope(q, rope)
    k = apply_rope(k, rope)
    q = constrain(q, ("batch", "seq", "act_heads", "head_dim"))
    new_cache = None
    if cache is not None:
      ck, cv = cache
      k = jax.lax.dynamic_update_slice_in_dim(ck, k.astype(ck.dtype),
                                              cache_index, axis=1)
      v = jax.lax.dynamic_update_slice_in_dim(cv, v.astype(cv.dtype),
                                              cache_index, axis=1)
      new_cache = (k, v)
      k, v = k.astype(dt), v.astype(dt)
    full_cpu = (cache is None and self.impl is None
                and jax.default_backend() == "cpu")
    if full_cpu and band is not None and q.shape[1] - band.prefix > BAND_BLOCK:
      out = banded_attention(q, k, v, mask, band)
    elif full_cpu:
      out = repeated_heads_attention(q, k, v, mask)
    else:
      out = jax.nn.dot_product_attention(q, k, v, mask=mask,
                                         implementation=self.impl)
    out = constrain(out, ("batch", "seq", "act_heads", "head_dim"))
    b, t, n, h = out.shape
    # One (B, T, N*H) x (N*H, D) product: as a 4-d einsum XLA:CPU chose a
    # layout that transposed and copied all of wo on every decoding call.
    out = out.reshape(b, t, n * h)
    wo = self.wo[...].astype(dt).reshape(n * h, -1)
    y = jnp.einsum("btk,kd->btd", out, wo)
    y = y + self._adapt(self.lora_o, out, y.shape)
    return y, new_cache

  def _adapt(self, lora, x, shape):
    if lora is None:
      return 0.0
    return lora_lib.apply(lora, x, self.lora_scale).reshape(shape)
