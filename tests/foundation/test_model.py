"""CSM module shapes, logical axes, causality, packing and the extension hooks."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.data.examples.synthetic_tokens import SyntheticTokenSource
from csm_jax.model.csm import CSM
from csm_jax.model.layers import (RopeConfig, apply_rope, rope_angles,
                                  rope_inv_freq)
from csm_jax.model.loss import csm_loss
from tests.foundation.tiny import tiny_config


def _batch(config, n=2, seed=0):
  src = SyntheticTokenSource(config, 16, seed)
  items = [src[i] for i in range(n)]
  return {k: jnp.asarray(np.stack([it[k] for it in items])) for k in items[0]}


def _model(config):
  return CSM(config.model, nnx.Rngs(params=0))


def test_forward_shapes():
  c = tiny_config()
  model, batch = _model(c), _batch(c)
  h, logits = model(batch["audio_tokens"], batch["text_tokens"], batch["mask"],
                    batch["positions"], batch["segment_ids"])
  t = c.data.seq_len
  assert h.shape == (2, t, c.model.backbone.width)
  assert logits.shape == (2, t, c.model.audio_vocab)
  codes = batch["audio_tokens"][0, :5]
  dec = model.decoder_logits(h[0, :5], codes)
  assert dec.shape == (5, c.model.n_codebooks - 1, c.model.audio_vocab)


def test_every_param_has_logical_axes_of_its_rank():
  model = _model(tiny_config())
  state = nnx.state(model, nnx.Param)
  leaves = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))
  assert leaves
  for v in leaves:
    axes = v.get_metadata().get("logical_axes")
    assert axes is not None and len(axes) == v.get_value().ndim


def test_stacked_layers_have_a_layers_axis():
  c = tiny_config()
  model = _model(c)
  wq = model.backbone.layers.attn.wq
  assert wq.get_value().shape[0] == c.model.backbone.depth
  assert wq.get_metadata()["logical_axes"][0] == "layers"


def test_future_rows_and_other_segments_do_not_leak():
  c = tiny_config()
  model, batch = _model(c), _batch(c, n=1)
  args = lambda b: (b["audio_tokens"], b["text_tokens"], b["mask"],
                    b["positions"], b["segment_ids"])
  h0, _ = model(*args(batch))
  seg = np.asarray(batch["segment_ids"][0])
  first_end = int(np.argmax(seg != seg[0]))  # first row of segment 2
  assert first_end > 4
  changed = dict(batch)
  audio = np.asarray(batch["audio_tokens"]).copy()
  audio[0, first_end:] = (audio[0, first_end:] + 1) % c.model.codebook_size
  changed["audio_tokens"] = jnp.asarray(audio)
  h1, _ = model(*args(changed))
  np.testing.assert_allclose(h0[0, :first_end], h1[0, :first_end], atol=1e-6)
  assert not np.allclose(h0[0, first_end:], h1[0, first_end:])


def test_prefix_and_cond_hooks_change_outputs():
  c = tiny_config(model__cond_dim=5)
  model, batch = _model(c), _batch(c, n=1)
  base = (batch["audio_tokens"], batch["text_tokens"], batch["mask"],
          batch["positions"], batch["segment_ids"])
  h0, _ = model(*base)
  cond = jnp.ones((1, c.data.seq_len, 5))
  h1, _ = model(*base, cond=cond)
  prefix = jnp.ones((1, 3, c.model.backbone.width))
  h2, _ = model(*base, prefix=prefix)
  assert h1.shape == h0.shape == h2.shape
  assert not np.allclose(h0, h1) and not np.allclose(h0, h2)


def test_llama3_rope_scaling_keeps_high_and_slows_low_frequencies():
  plain = rope_inv_freq(64, RopeConfig(scaling="none"))
  scaled = rope_inv_freq(64, RopeConfig(scaling="llama3", factor=32.0))
  np.testing.assert_allclose(scaled[0], plain[0])
  np.testing.assert_allclose(scaled[-1], plain[-1] / 32.0, rtol=1e-6)
  assert np.all(scaled <= plain + 1e-12)


def test_rope_rotates_half_split_pairs_by_position_times_frequency():
  """Against numpy, for any positions (a memory prefix's are negative), in
  jit and under differentiation, where the rotation table is computed once
  per pass; the gradient is the inverse rotation."""
  rng = np.random.default_rng(0)
  pos = np.array([[-3, -1, 0, 1, 7, 7], [500, 2, 9, 0, -2, 4]], np.int32)
  x = rng.normal(size=(2, 6, 3, 8)).astype(np.float32)
  inv = rope_inv_freq(8, RopeConfig(scaling="none"))
  ang = pos[..., None, None] * np.asarray(inv)  # (B, T, 1, 4)
  x1, x2 = x[..., :4], x[..., 4:]
  want = np.concatenate([x1 * np.cos(ang) - x2 * np.sin(ang),
                         x2 * np.cos(ang) + x1 * np.sin(ang)], -1)
  rot = jax.jit(lambda x, p: apply_rope(x, rope_angles(p, inv)))
  np.testing.assert_allclose(rot(x, pos), want, rtol=1e-5, atol=1e-5)
  y = rng.normal(size=x.shape).astype(np.float32)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(rot(x, pos) * y)))(x)
  back = apply_rope(jnp.asarray(y), rope_angles(-jnp.asarray(pos), inv))
  np.testing.assert_allclose(grad, back, rtol=1e-5, atol=1e-5)


def test_loss_is_finite_and_decoder_uses_a_fraction_of_frames():
  c = tiny_config()
  model, batch = _model(c), _batch(c, n=2)
  loss, m = csm_loss(model, batch, jax.random.key(0), 0.25, 0.1)
  assert np.isfinite(loss)
  assert 0 < m["frames/decoder"] < m["frames/target"]
  # Uniform predictions give about log(vocab) per codebook at init.
  assert abs(float(m["loss/cb0"]) - np.log(c.model.audio_vocab)) < 1.5
  for i in range(c.model.n_codebooks):
    assert f"loss/cb{i}" in m
