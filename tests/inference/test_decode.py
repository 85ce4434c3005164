"""Cached decoding reproduces the teacher-forced model; sampling bounds hold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.data.examples.synthetic_tokens import SyntheticTokenSource
from csm_jax.inference import decode, sampling
from csm_jax.inference.sampling import (draw_width, filter_top_k,
                                       filter_top_p, gumbel_noise, sample)
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config


def _one_segment_example(c):
  ex = SyntheticTokenSource(c, 4, 0)[0]
  keep = ex["segment_ids"] == 1
  return {k: v[keep][None] for k, v in ex.items()}


LAYOUTS = pytest.mark.parametrize("unroll", [False, True],
                                  ids=["stacked", "unrolled"])


@LAYOUTS
def test_cached_backbone_matches_full_forward(unroll):
  c = tiny_config()
  full = CSM(c.model, nnx.Rngs(params=0))
  model = decode.unrolled(full) if unroll else full
  ex = _one_segment_example(c)
  t = ex["segment_ids"].shape[1]
  assert t >= 8
  args = (ex["audio_tokens"], ex["text_tokens"], ex["mask"], ex["positions"],
          ex["segment_ids"])
  h_full, _ = full(*map(jnp.asarray, args))
  p = t // 2
  state = decode.init_state(model, 1, 64)
  state = decode.append_rows(model, state, *(jnp.asarray(a[:, :p]) for a in args))
  np.testing.assert_allclose(state["h"], h_full[:, p - 1], atol=2e-5)
  for i in range(p, t):
    state = decode.append_rows(model, state,
                               *(jnp.asarray(a[:, i:i + 1]) for a in args))
    np.testing.assert_allclose(state["h"], h_full[:, i], atol=2e-5,
                               err_msg=f"row {i}")


@LAYOUTS
def test_decoder_loop_matches_teacher_forced_logits(unroll):
  c = tiny_config()
  model = CSM(c.model, nnx.Rngs(params=1))
  h = jax.random.normal(jax.random.key(0), (3, c.model.backbone.width))
  temps = jnp.full((c.model.n_codebooks,), 0.0)
  dec_model = decode.unrolled(model) if unroll else model
  codes, logits = decode.decode_frame(dec_model, h, jax.random.key(1), temps,
                                      return_logits=True)
  np.testing.assert_array_equal(codes, jnp.argmax(logits, -1))
  cs = c.model.codebook_size  # special ids above the codebook are masked
  assert np.all(np.asarray(codes) < cs)
  tf = model.decoder_logits(h, codes)
  np.testing.assert_allclose(logits[:, 1:, :cs], tf[..., :cs], atol=2e-5)
  np.testing.assert_allclose(logits[:, 0, :cs], model.codebook0_head(h)[:, :cs],
                             atol=2e-5)
  assert np.all(np.asarray(logits[..., cs:]) < -1e29)


def test_generate_frames_is_seeded_and_adaptive_levels_zero_the_rest():
  c = tiny_config()
  model = CSM(c.model, nnx.Rngs(params=0))
  ex = _one_segment_example(c)
  state = decode.init_state(model, 1, 64)
  state = decode.append_rows(model, state, *(jnp.asarray(a) for a in (
      ex["audio_tokens"], ex["text_tokens"], ex["mask"], ex["positions"],
      ex["segment_ids"])))
  temps = jnp.full((c.model.n_codebooks,), 0.9)
  gen = jax.jit(lambda s, k: decode.generate_frames(model, s, k, 4, temps,
                                                    top_k=8))
  a, _, _ = gen(state, jax.random.key(3))
  b, _, _ = gen(state, jax.random.key(3))
  d, _, _ = gen(state, jax.random.key(4))
  assert a.shape == (4, 1, c.model.n_codebooks)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, d)
  fast = decode.unrolled(model)
  # The stacked cache, split per layer, is the unrolled model's cache.
  fast_state = dict(state, k=list(state["k"]), v=list(state["v"]))
  u, _, _ = jax.jit(lambda s, k: decode.generate_frames(fast, s, k, 4, temps,
                                                        top_k=8))(
      fast_state, jax.random.key(3))
  np.testing.assert_array_equal(a, u)  # same frames from per-layer weights
  short, _, _ = decode.generate_frames(model, state, jax.random.key(3), 2,
                                       temps, n_levels=2)
  assert np.all(np.asarray(short)[..., 2:] == 0)


def test_top_k_and_top_p_respect_their_bounds():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(4, 50)) * 3, jnp.float32)
  kept = np.asarray(filter_top_k(logits, 5) > -1e29)
  assert (kept.sum(-1) == 5).all()
  top5 = np.argsort(-np.asarray(logits), -1)[:, :5]
  for r in range(4):
    assert set(np.flatnonzero(kept[r])) == set(top5[r])
  probs = np.asarray(jax.nn.softmax(logits, -1))
  keep_p = np.asarray(filter_top_p(logits, 0.7) > -1e29)
  for r in range(4):
    mass = probs[r][keep_p[r]].sum()
    smaller = np.sort(probs[r][keep_p[r]])[1:].sum() if keep_p[r].sum() > 1 else 0
    assert mass >= 0.7 - 1e-6 and smaller < 0.7 + 1e-6
  draws = jax.vmap(lambda k: sample(logits, k, 1.0, top_k=3))(
      jax.random.split(jax.random.key(0), 200))
  top3 = np.argsort(-np.asarray(logits), -1)[:, :3]
  for r in range(4):
    assert set(np.unique(np.asarray(draws)[:, r])) <= set(top3[r])
  greedy = sample(logits, jax.random.key(0), 0.0)
  np.testing.assert_array_equal(greedy, jnp.argmax(logits, -1))


def test_platform_precision_policy():
  tree = {"w": jnp.ones((2, 2), jnp.bfloat16), "ids": jnp.ones((2,), jnp.int32)}
  cpu = decode.params_for_platform(tree, "cpu")
  assert cpu["w"].dtype == jnp.float32 and cpu["ids"].dtype == jnp.int32
  assert decode.params_for_platform(tree, "gpu")["w"].dtype == jnp.bfloat16
  assert decode.compute_dtype_for_platform("bfloat16", "cpu") == jnp.float32
  assert decode.compute_dtype_for_platform("bfloat16", "tpu") == jnp.bfloat16
  c = tiny_config(model__dtype="bfloat16")
  model = CSM(c.model, nnx.Rngs(params=0))
  fast = decode.unrolled(model, jnp.float32)
  assert fast.backbone.blocks[0].attn.dtype == jnp.float32
  assert fast.decoder.cache_dtype == jnp.float32
  assert model.backbone.layers.attn.dtype == jnp.bfloat16  # original untouched
  state = decode.init_state(fast, 1, 16)
  assert state["k"][0].dtype == jnp.float32


def test_top_k_sampling_draws_the_filtered_distribution():
  # The top-k sampler draws among the k kept ids; its frequencies must be
  # the softmax of the kept logits (what filtering all V would sample).
  logits = jnp.asarray([[2.0, 1.0, 0.5, -1.0, 0.0, 1.5, -3.0, 0.2]])
  n, k, t = 20000, 4, 0.8
  keys = jax.random.split(jax.random.key(3), n)
  draws = np.asarray(jax.vmap(lambda kk: sample(logits, kk, t, top_k=k))(
      keys))[:, 0]
  kept = np.asarray(filter_top_k(logits / t, k))[0]
  want = np.asarray(jax.nn.softmax(kept))
  freq = np.bincount(draws, minlength=logits.shape[-1]) / n
  assert set(np.flatnonzero(freq)) == set(np.flatnonzero(want > 1e-12))
  # Chi-square over the kept ids, 3 degrees of freedom: 16.3 is p = 0.001.
  nz = want > 1e-12
  chi2 = (((freq[nz] - want[nz]) * n) ** 2 / (want[nz] * n)).sum()
  assert chi2 < 16.3, (chi2, freq, want)
  # Per-row keys: a row draws the same alone as in a batch.
  batch = jnp.concatenate([logits, logits[:, ::-1]])
  rk = jax.random.split(jax.random.key(5), 2)
  both = sample(batch, rk, t, top_k=k)
  assert int(both[0]) == int(sample(logits, rk[:1], t, top_k=k)[0])


@pytest.mark.parametrize("top_k", [0, 4])
def test_sampling_with_drawn_noise_draws_the_filtered_distribution(top_k):
  # A frame's codebooks draw from Gumbel noise made in one call; each
  # draw's frequencies must be the softmax of its kept logits.
  logits = jnp.asarray([[2.0, 1.0, 0.5, -1.0, 0.0, 1.5, -3.0, 0.2]])
  n, draws, t = 20000, 3, 0.8
  width = draw_width(logits.shape[-1], top_k)
  assert width == (top_k or logits.shape[-1])
  noise = gumbel_noise(jax.random.split(jax.random.key(7), n), draws, n,
                       width)
  assert noise.shape == (draws, n, width)
  rows = jnp.broadcast_to(logits, (n, logits.shape[-1]))
  kept = np.asarray(filter_top_k(logits / t, top_k))[0]
  want = np.asarray(jax.nn.softmax(kept))
  nz = want > 1e-12
  # Chi-square over the kept ids at p = 0.001: 16.3 for 3 degrees of
  # freedom (top 4), 24.3 for 7 (all 8).
  bound = {3: 16.3, 7: 24.3}[int(nz.sum()) - 1]
  firsts = []
  for d in range(draws):
    got = np.asarray(sample(rows, None, t, top_k=top_k, noise=noise[d]))
    freq = np.bincount(got, minlength=logits.shape[-1]) / n
    assert set(np.flatnonzero(freq)) == set(np.flatnonzero(nz))
    chi2 = (((freq[nz] - want[nz]) * n) ** 2 / (want[nz] * n)).sum()
    assert chi2 < bound, (d, chi2, freq, want)
    firsts.append(got[:200])
  # The draws are independent of one another, and a row's noise comes
  # from its own key alone.
  assert not np.array_equal(firsts[0], firsts[1])
  keys = jax.random.split(jax.random.key(8), 3)
  np.testing.assert_array_equal(gumbel_noise(keys[1:2], draws, 1, width)[:, 0],
                                gumbel_noise(keys, draws, 3, width)[:, 1])


def test_a_chunks_keys_are_each_rows_key_folded_with_its_index():
  keys = jax.vmap(jax.random.key)(jnp.arange(3, dtype=jnp.uint32))
  for index in (0, 7, 1 << 20):
    want = jnp.stack([jax.random.fold_in(k, index) for k in keys])
    np.testing.assert_array_equal(
        jax.random.key_data(sampling.fold_rows(keys, index)),
        jax.random.key_data(want))
  assert not np.array_equal(jax.random.key_data(sampling.fold_rows(keys, 1)),
                            jax.random.key_data(sampling.fold_rows(keys, 2)))
