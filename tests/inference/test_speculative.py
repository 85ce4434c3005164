"""Speculative depth decoding keeps the decoder's greedy codes and sampler.

The drafter is the decoder's first block, so the tiny model gets a
two-block decoder: with one block the drafts would always be accepted and
nothing would be tested.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats as scipy_stats

from csm_jax.inference import decode, speculative
from csm_jax.inference.sampling import NEG_INF, filter_top_k
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config


def _model(seed=1, **overrides):
  c = tiny_config(**overrides)
  c.model.decoder.depth = 2
  return c, decode.unrolled(CSM(c.model, nnx.Rngs(params=seed)))


def _prompted_state(model, c, batch):
  t = 6
  rng = np.random.default_rng(0)
  n = c.model.n_codebooks
  audio = jnp.asarray(rng.integers(0, c.model.codebook_size, (batch, t, n)),
                      jnp.int32)
  text = jnp.asarray(rng.integers(0, c.model.text_vocab, (batch, t)),
                     jnp.int32)
  mask = jnp.ones((batch, t, n + 1), bool).at[:, :3, :n].set(False)
  mask = mask.at[:, 3:, n].set(False)
  pos = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (batch, t))
  state = decode.init_state(model, batch, 32)
  return decode.append_rows(model, state, audio, text, mask, pos,
                            jnp.ones((batch, t), jnp.int32))


@pytest.mark.parametrize("draft", [1, 5])
def test_greedy_frames_equal_plain_greedy(draft):
  c, model = _model()
  n = c.model.n_codebooks
  temps = jnp.zeros((n,))
  state = _prompted_state(model, c, 3)
  plain = jax.jit(lambda s: decode.generate_frames(
      model, s, jax.random.key(0), 4, temps))(state)
  spec = jax.jit(lambda s: speculative.generate_frames(
      model, s, jax.random.key(0), 4, temps, draft=draft,
      return_stats=True))(state)
  np.testing.assert_array_equal(spec[0], plain[0])
  np.testing.assert_array_equal(spec[1], plain[1])
  np.testing.assert_allclose(spec[2]["h"], plain[2]["h"], atol=1e-5)
  st = spec[3]
  # Some drafts were rejected (the drafter differs from the decoder), so
  # the equality above went through the residual path too.
  assert 0 < st["accepted"].sum() < st["evaluated"].sum()
  assert np.all(st["accepted"] <= st["evaluated"])
  # Every frame needs at least one round, at most one per codebook.
  assert np.all(st["rounds"] >= 4) and np.all(st["rounds"] <= 4 * (n - 1))


def test_reduced_levels_and_mid_frame_starts_match_plain_greedy():
  c, model = _model()
  n = c.model.n_codebooks
  h = jax.random.normal(jax.random.key(3), (6, c.model.backbone.width))
  temps = jnp.zeros((n,))
  for levels in (1, n - 1):
    plain = jax.jit(lambda h: decode.decode_frame(
        model, h, jax.random.key(1), temps, n_levels=levels))(h)
    spec = jax.jit(lambda h: speculative.decode_frame(
        model, h, jax.random.key(1), temps, n_levels=levels, draft=2))(h)
    np.testing.assert_array_equal(spec[0], plain[0], err_msg=str(levels))
    np.testing.assert_array_equal(spec[1], plain[1], err_msg=str(levels))
    assert np.all(np.asarray(spec[0])[:, levels:] == 0)
  # Rounds that stop mid-frame and go on later from the returned cache
  # (the reduced-quality completion) give the plain greedy frame.
  full, _ = decode.decode_frame(model, h, jax.random.key(1), temps)
  stop = jnp.asarray([0, 1, 2, 1, 2, 0], jnp.int32)
  keys = jax.random.split(jax.random.key(2), 6)

  def two_calls(h, c, k, s):
    cache = speculative.start_frame(model, h, 2)
    c, cache, first = speculative.depth_codes(model, cache, c, k, temps, 0,
                                              1.0, 0, s, 2)
    c, _, _ = speculative.depth_codes(model, cache, c, jax.random.fold_in(
        k, 1), temps, 0, 1.0, s, n - 1, 2)
    return c, first

  known = jnp.where(jnp.arange(n) < 1, full, 0)
  rest, first = jax.jit(jax.vmap(two_calls))(h, known, keys, stop)
  np.testing.assert_array_equal(rest, full)
  assert np.all(np.asarray(first["evaluated"])[
      np.arange(n) > np.asarray(stop)[:, None]] == 0)


def _joint(model, h, temperature, top_k):
  """Exact joint distribution of a frame's codes (V^N,), by enumeration."""
  n, cs = model.n_codebooks, model.codebook_size
  frames = np.asarray(list(itertools.product(range(cs), repeat=n)), np.int32)
  m = len(frames)
  hs = jnp.broadcast_to(h, (m, h.shape[-1]))
  logits = jnp.concatenate(
      [model.codebook0_head(hs)[:, None],
       model.decoder_logits(hs, jnp.asarray(frames))], axis=1)[..., :cs]
  logits = filter_top_k(logits.astype(jnp.float32) / temperature, top_k)
  logp = jax.nn.log_softmax(jnp.where(logits <= NEG_INF / 2, -jnp.inf,
                                      logits), -1)
  picked = jnp.take_along_axis(logp, jnp.asarray(frames)[..., None], -1)
  return np.exp(np.asarray(jnp.sum(picked[..., 0], -1), np.float64)), frames


def _drafter_only(model):
  """A copy whose decoder is its first block: what the drafts follow."""
  m = nnx.merge(*nnx.split(model))
  m.decoder.blocks = nnx.List(list(m.decoder.blocks)[:1])
  return m


def _chi2_p(counts, probs):
  # Cells expected below 5 pooled into one, as the test needs.
  expected = probs * counts.sum()
  small = expected < 5
  obs = np.append(counts[~small], counts[small].sum())
  exp = np.append(expected[~small], expected[small].sum())
  if exp[-1] == 0:
    obs, exp = obs[:-1], exp[:-1]
  return scipy_stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue


@pytest.mark.parametrize("temperature,top_k,draft", [(1.0, 0, 2),
                                                     (0.8, 3, 1)])
def test_sampled_frames_follow_the_decoders_distribution(temperature, top_k,
                                                         draft):
  # 3 codebooks of 4 codes: 64 joint outcomes, enumerated exactly.
  c, model = _model(seed=2, model__n_codebooks=3, model__codebook_size=4,
                    model__audio_vocab=5)
  n, cs = 3, 4
  h = jax.random.normal(jax.random.key(5), (c.model.backbone.width,))
  samples = 40_000
  temps = jnp.full((n,), temperature)

  @jax.jit
  def draw(key):
    hs = jnp.broadcast_to(h, (samples, h.shape[0]))
    keys = jax.random.split(key, samples)
    return speculative.decode_frame(model, hs, keys, temps, top_k=top_k,
                                    draft=draft, return_stats=True)

  codes, _, st = draw(jax.random.key(11))
  codes = np.asarray(codes)
  index = (codes * cs ** np.arange(n - 1, -1, -1)).sum(-1)
  counts = np.bincount(index, minlength=cs ** n).astype(np.float64)
  exact, frames = _joint(model, h, temperature, top_k)
  assert np.allclose(exact.sum(), 1.0, atol=1e-5)
  np.testing.assert_array_equal(
      (frames * cs ** np.arange(n - 1, -1, -1)).sum(-1), np.arange(cs ** n))
  assert _chi2_p(counts, exact) > 1e-3
  # The test has power: the drafter's own joint is rejected by the same
  # samples, and a good share of drafts were rejected along the way.
  drafter, _ = _joint(_drafter_only(model), h, temperature, top_k)
  assert _chi2_p(counts, drafter) < 1e-6
  rate = st["accepted"].sum() / st["evaluated"].sum()
  assert 0.2 < rate < 0.95
  # Plain decoding (a frame's noise drawn in one call) samples the same
  # joint distribution.
  plain = jax.jit(lambda key: decode.decode_frame(
      model, jnp.broadcast_to(h, (samples, h.shape[0])),
      jax.random.split(key, samples), temps, top_k=top_k)[0])(
          jax.random.key(12))
  index = (np.asarray(plain) * cs ** np.arange(n - 1, -1, -1)).sum(-1)
  counts = np.bincount(index, minlength=cs ** n).astype(np.float64)
  assert _chi2_p(counts, exact) > 1e-3
  assert _chi2_p(counts, drafter) < 1e-6


def test_batch_of_one_decodes_as_inside_a_batch():
  """Batch 1 runs the rounds without vmap; each example's frames, sampled
  with its own key, are the ones it gets inside a batch of three."""
  c, model = _model()
  n = c.model.n_codebooks
  temps = jnp.full((n,), 0.9)
  state = _prompted_state(model, c, 3)
  keys = jax.random.split(jax.random.key(4), 3)
  run = jax.jit(lambda s, k: speculative.generate_frames(
      model, s, k, 3, temps, top_k=8, draft=2, return_stats=True))
  together = run(state, keys)
  for i in range(3):
    alone = run(jax.tree.map(lambda x, i=i: x[i:i + 1] if x.ndim else x,
                             state), keys[i:i + 1])
    np.testing.assert_array_equal(alone[0][:, 0], together[0][:, i])
    np.testing.assert_array_equal(alone[3]["rounds"][0],
                                  together[3]["rounds"][i])
