"""The asymmetric attention mask against a brute-force loop, and GQA numerics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.model.attention import layout_mask, row_windows


def _random_layout(rng, t, n_cb):
  """Packed rows: segments of text rows and audio frames, then padding."""
  mask = np.zeros((t, n_cb + 1), bool)
  seg = np.zeros(t, np.int32)
  row, s = 0, 0
  end = t - rng.integers(0, 5)
  while row < end:
    s += 1
    for _ in range(rng.integers(1, 4)):
      for kind in ("text", "audio"):
        k = int(rng.integers(1, 6))
        k = min(k, end - row)
        if k <= 0:
          break
        if kind == "text":
          mask[row:row + k, -1] = True
        else:
          mask[row:row + k, :-1] = True
        seg[row:row + k] = s
        row += k
  return mask, seg


def _brute(mask, seg, text_w, audio_w, n_prefix=0):
  t = len(seg)
  total = n_prefix + t
  out = np.zeros((total, total), bool)
  for qi in range(total):
    for ki in range(total):
      q, k = qi - n_prefix, ki - n_prefix
      if k < 0:  # prefix key: visible to all real queries, causal among prefix
        if q < 0:
          out[qi, ki] = k <= q
        else:
          out[qi, ki] = seg[q] > 0
        continue
      if q < 0:
        continue
      if seg[q] == 0 or seg[q] != seg[k] or k > q:
        continue
      is_text = mask[q, -1] and not mask[q, :-1].any()
      window = text_w if is_text else audio_w
      out[qi, ki] = q - k < window
  return out


@pytest.mark.parametrize("seed", range(6))
def test_layout_mask_matches_brute_force(seed):
  rng = np.random.default_rng(seed)
  t, n_cb, text_w, audio_w = 40, 3, 3, 9
  masks, segs = zip(*[_random_layout(rng, t, n_cb) for _ in range(2)])
  masks, segs = np.stack(masks), np.stack(segs)
  windows = row_windows(jnp.asarray(masks), text_w, audio_w)
  idx = jnp.broadcast_to(jnp.arange(t), (2, t))
  got = np.asarray(layout_mask(idx, jnp.asarray(segs), windows, idx,
                               jnp.asarray(segs)))
  for b in range(2):
    np.testing.assert_array_equal(got[b, 0],
                                  _brute(masks[b], segs[b], text_w, audio_w))


def test_layout_mask_with_prefix_matches_brute_force():
  rng = np.random.default_rng(7)
  t, p = 24, 3
  mask, seg = _random_layout(rng, t, 2)
  windows = row_windows(jnp.asarray(mask[None]), 2, 6)
  idx = jnp.concatenate([jnp.arange(-p, 0), jnp.arange(t)])[None]
  segs = jnp.concatenate([jnp.full((p,), -1), jnp.asarray(seg)])[None]
  wins = jnp.concatenate([jnp.full((1, p), 6), windows], axis=1)
  got = np.asarray(layout_mask(idx, segs, wins, idx, segs))[0, 0]
  np.testing.assert_array_equal(got, _brute(mask, seg, 2, 6, n_prefix=p))


def test_text_rows_see_less_than_audio_rows():
  mask = np.zeros((1, 12, 3), bool)
  mask[0, :6, -1] = True   # six text rows
  mask[0, 6:, :-1] = True  # six audio frames
  seg = jnp.ones((1, 12), jnp.int32)
  idx = jnp.arange(12)[None]
  m = np.asarray(layout_mask(idx, seg, row_windows(jnp.asarray(mask), 2, 100),
                             idx, seg))[0, 0]
  assert m[5].sum() == 2      # text row: itself and one before
  assert m[11].sum() == 12    # audio row: everything before it


def test_grouped_query_attention_matches_reference():
  rng = np.random.default_rng(0)
  b, t, n, k, h = 2, 7, 4, 2, 8
  q = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32)
  kk = jnp.asarray(rng.normal(size=(b, t, k, h)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(b, t, k, h)), jnp.float32)
  mask = jnp.tril(jnp.ones((t, t), bool))[None, None]
  got = jax.nn.dot_product_attention(q, kk, v, mask=mask, implementation="xla")
  rep = n // k
  kr, vr = jnp.repeat(kk, rep, axis=2), jnp.repeat(v, rep, axis=2)
  s = jnp.einsum("btnh,bsnh->bnts", q, kr) / np.sqrt(h)
  s = jnp.where(mask, s, -1e30)
  want = jnp.einsum("bnts,bsnh->btnh", jax.nn.softmax(s, -1), vr)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_repeated_heads_attention_is_jaxs_attention_values_and_gradients():
  """The CPU training path computes what jax.nn.dot_product_attention does,
  forward and backward, with a packed layout's mask (padding rows see
  nothing: their output is the uniform average, as jax's)."""
  from csm_jax.model.attention import repeated_heads_attention
  rng = np.random.default_rng(1)
  b, t, n, k, h = 2, 9, 6, 2, 8
  q, kk, v = (jnp.asarray(rng.normal(size=(b, t, m, h)), jnp.float32)
              for m in (n, k, k))
  mask = np.tril(np.ones((t, t), bool))[None, None].repeat(b, 0)
  mask[1, :, -2:, :] = False  # two padding queries
  mask = jnp.asarray(mask)
  ours = lambda *a: repeated_heads_attention(*a, mask)
  jaxs = lambda *a: jax.nn.dot_product_attention(*a, mask=mask,
                                                 implementation="xla")
  np.testing.assert_allclose(ours(q, kk, v), jaxs(q, kk, v), atol=1e-5)
  w = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32)
  grad = lambda f: jax.grad(lambda *a: jnp.sum(f(*a) * w), (0, 1, 2))(
      q, kk, v)
  for got, want in zip(grad(ours), grad(jaxs)):
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_cpu_attention_layer_uses_repeated_heads_for_full_sequences(
    monkeypatch):
  """Without a cache on CPU the layer takes the repeated-heads path; with
  a cache (decoding) it keeps jax's grouped attention."""
  from flax import nnx
  from csm_jax.model import attention
  from csm_jax.model.layers import (Precision, RopeConfig, rope_angles,
                                    rope_inv_freq)
  calls = []
  real = attention.repeated_heads_attention
  monkeypatch.setattr(attention, "repeated_heads_attention",
                      lambda *a: calls.append(1) or real(*a))
  layer = attention.Attention(16, 4, 2, 4, "embed", Precision(),
                              nnx.Rngs(params=0))
  x = jnp.ones((1, 3, 16))
  pos = jnp.arange(3)[None]
  rope = rope_angles(pos, rope_inv_freq(4, RopeConfig()))
  full, _ = layer(x, rope, attention.causal_mask(1, 3))
  assert calls == [1]
  cache = (jnp.zeros((1, 3, 2, 4)), jnp.zeros((1, 3, 2, 4)))
  cached, _ = layer(x, rope, attention.causal_mask(1, 3), cache, 0)
  assert calls == [1]
  np.testing.assert_allclose(full, cached, atol=1e-5)


@pytest.mark.parametrize("t,prefix,window,block", [
    (40, 0, 9, 8),    # windows shorter than a block's reach
    (40, 3, 9, 8),    # a memory prefix every row sees
    (37, 2, 100, 8),  # window past the sequence: causal only; ragged blocks
])
def test_banded_attention_is_dense_attention_on_a_packed_layout(
    t, prefix, window, block):
  """Values and gradients equal the dense path's on every row that sees a
  key, for packed segments, text/audio windows, padding and a prefix; the
  banded path never reads a key outside the band (keys there are NaN)."""
  from csm_jax.model.attention import (Band, banded_attention,
                                       repeated_heads_attention)
  rng = np.random.default_rng(t + prefix)
  b, n, kh, h = 2, 4, 2, 8
  masks, segs = zip(*[_random_layout(rng, t - prefix, 3) for _ in range(b)])
  wins = row_windows(jnp.asarray(np.stack(masks)), 3, window)
  segs = jnp.asarray(np.stack(segs))
  if prefix:
    segs = jnp.concatenate([jnp.full((b, prefix), -1), segs], 1)
    wins = jnp.concatenate([jnp.full((b, prefix), window), wins], 1)
  idx = jnp.broadcast_to(jnp.arange(t), (b, t))
  mask = layout_mask(idx, segs, wins, idx, segs)
  q, kk, v = (jnp.asarray(rng.normal(size=(b, t, m, h)), jnp.float32)
              for m in (n, kh, kh))
  sees = np.asarray(jnp.any(mask[:, 0], -1))  # (b, t)
  assert (~sees).any() and sees.any()  # padding rows are exercised
  w = jnp.asarray(rng.normal(size=(b, t, n, h)), jnp.float32) * sees[
      ..., None, None]
  band = Band(window, prefix)
  banded = lambda *a: banded_attention(*a, mask, band, block=block)
  dense = lambda *a: repeated_heads_attention(*a, mask)
  np.testing.assert_allclose(np.asarray(banded(q, kk, v))[sees],
                             np.asarray(dense(q, kk, v))[sees], atol=1e-5)
  grad = lambda f: jax.grad(lambda *a: jnp.sum(f(*a) * w), (0, 1, 2))(
      q, kk, v)
  for got, want in zip(grad(banded), grad(dense)):
    np.testing.assert_allclose(got, want, atol=1e-5)
  # The last block reads no value before its band: NaN values there leave
  # its rows finite and equal, where the dense path turns every row NaN.
  last = prefix + (t - prefix - 1) // block * block
  lo = max(prefix, last - window + 1)
  lo = prefix + (lo - prefix) // block * block
  if lo > prefix:
    poisoned = v.at[:, prefix:lo].set(jnp.nan)
    rows = sees[:, last:]
    got = np.asarray(banded_attention(q, kk, poisoned, mask, band,
                                      block=block))[:, last:]
    np.testing.assert_allclose(got[rows], np.asarray(dense(q, kk, v))[
        :, last:][rows], atol=1e-5)
    assert np.isnan(np.asarray(dense(q, kk, poisoned))[:, last:][rows]).all()


def test_training_forward_takes_the_banded_path_with_the_model_band(
    monkeypatch):
  """CSM's full-sequence backbone hands attention its windows' band (the
  larger window, the prefix length)."""
  from csm_jax.model import attention
  seen = []
  real = attention.banded_attention
  monkeypatch.setattr(attention, "banded_attention",
                      lambda *a, **k: seen.append(a[4]) or real(*a, **k))
  from csm_jax.model.csm import CSM
  from flax import nnx
  from tests.foundation.tiny import tiny_config
  cfg = tiny_config()
  cfg.model.text_window, cfg.model.audio_window = 16, 100
  model = CSM(cfg.model, nnx.Rngs(params=0))
  b, t, n = 1, 2 * attention.BAND_BLOCK, cfg.model.n_codebooks
  mask = jnp.ones((b, t, n + 1), bool)
  pos = jnp.arange(t)[None]
  seg = jnp.ones((b, t), jnp.int32)
  model.backbone_hidden(jnp.zeros((b, t, n), jnp.int32),
                        jnp.zeros((b, t), jnp.int32), mask, pos, seg)
  assert seen and set(seen) == {attention.Band(100, 0)}
