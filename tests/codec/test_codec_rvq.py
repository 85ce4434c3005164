"""Residual VQ: k-means init, EMA updates, dead-code restarts, dropout, prefixes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.codec.rvq import ResidualVQ, SplitQuantizer, kmeans


@pytest.fixture(scope="module")
def setup(tiny):
  rvq = ResidualVQ(6, 3, tiny.rvq, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(rvq)

  @jax.jit
  def train(state, x, mask, rng):
    m = nnx.merge(graphdef, state)
    out, codes, aux = m(x, mask, rng=rng, update=True)
    return nnx.state(m), out, codes, aux

  @jax.jit
  def infer(state, x):
    m = nnx.merge(graphdef, state)
    return m(x)

  x = jax.random.normal(jax.random.key(1), (4, 10, 6))
  return graphdef, state, train, infer, x


def test_kmeans_init_then_ema(setup):
  graphdef, state, train, _, x = setup
  ones = jnp.ones((4, 3))
  assert not bool(state["initialized"][...])
  s1, _, codes, aux = train(state, x, ones, jax.random.key(2))
  assert bool(s1["initialized"][...])
  cb0, cb1 = state["codebook"][...], s1["codebook"][...]
  assert not np.allclose(cb0, cb1)
  # After k-means the codebook sits on the data: level-0 error is far below
  # the data's variance.
  assert float(aux["commitment"][0]) < 0.5 * float(jnp.var(x))
  s2, _, _, _ = train(s1, x * 1.5, ones, jax.random.key(3))
  assert not np.allclose(s1["codebook"][...], s2["codebook"][...])
  assert not np.allclose(s1["cluster_size"][...], s2["cluster_size"][...])
  assert codes.dtype == jnp.int32 and codes.shape == (4, 10, 3)
  assert np.all((aux["usage"] > 0) & (aux["usage"] <= 1))
  assert np.all((aux["perplexity"] >= 1) & (aux["perplexity"] <= 16))


def test_dead_codes_are_restarted_at_batch_vectors(setup):
  graphdef, state, train, _, x = setup
  s1, _, _, _ = train(state, x, jnp.ones((4, 3)), jax.random.key(2))
  # Mark code 5 of level 0 dead and move it far from all data.
  s1["cluster_size"][...] = s1["cluster_size"][...].at[0, 5].set(0.0)
  s1["codebook"][...] = s1["codebook"][...].at[0, 5].set(100.0)
  s1["embed_sum"][...] = s1["embed_sum"][...].at[0, 5].set(0.0)
  s2, _, _, _ = train(s1, x, jnp.ones((4, 3)), jax.random.key(4))
  new = np.asarray(s2["codebook"][...][0, 5])
  assert np.all(np.abs(new) < 50)
  z = nnx.merge(graphdef, s1).in_proj(x).reshape(-1, 4)
  # The restarted code is one of the (level-0) batch vectors.
  assert np.min(np.abs(np.asarray(z) - new).sum(-1)) < 1e-4
  # Its count restarts at the dead-code floor (0.5 x mean count), not 0.
  cs = s2["cluster_size"][...][0]
  assert 0.4 * float(cs.mean()) < float(cs[5]) < 0.6 * float(cs.mean())


def test_quantizer_dropout_and_prefix_decode(setup):
  graphdef, state, train, infer, x = setup
  s1, _, _, _ = train(state, x, jnp.ones((4, 3)), jax.random.key(2))
  mask = jnp.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]], jnp.float32)
  s_before = s1
  _, out, codes, _ = train(s1, x, mask, jax.random.key(5))
  m = nnx.merge(graphdef, s_before)
  # Each example's output is the decode of its first n levels only.
  for b, n in enumerate([1, 2, 3, 1]):
    ref = m.decode(codes[b:b + 1, :, :n])
    np.testing.assert_allclose(out[b:b + 1], ref, atol=1e-5)
  # Inference codes are the same greedy codes; any prefix decodes and more
  # levels reconstruct better.
  enc = m.encode(x)
  _, icodes, _ = infer(s1, x)
  np.testing.assert_array_equal(enc, icodes)
  z = m.in_proj(x)
  errs = []
  for n in (1, 2, 3):
    assert m.encode(x, n).shape == (4, 10, n)
    rec = m.decode(enc[..., :n])
    assert rec.shape == x.shape
    errs.append(float(jnp.mean((m.out_proj(z) - rec) ** 2)))
  assert errs[0] > errs[1] > errs[2]


def test_split_quantizer_semantic_level(tiny):
  c = tiny.copy_and_resolve_references()
  c.semantic.enabled = True
  q = SplitQuantizer(6, c, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(1), (2, 5, 6))
  _, codes, aux = q(x, rng=jax.random.key(0), update=True)
  assert codes.shape == (2, 5, 3) and aux["usage"].shape == (3,)
  assert aux["semantic"].shape == x.shape
  out, _, _ = q(x)  # no update: same codebooks as encode/decode below
  np.testing.assert_allclose(q.decode(q.encode(x)), out, atol=1e-5)
  assert q.encode(x, 1).shape == (2, 5, 1)


def test_kmeans_reaches_a_fixed_point():
  centers = jnp.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])
  pts = centers[jnp.arange(80) % 4] + jax.random.normal(
      jax.random.key(0), (80, 2))
  w = jnp.ones(80).at[:10].set(0.0)  # zero-weight rows must not count
  cent, cnt, sums = kmeans(pts, w, jax.random.key(1), 4, 10)
  assert float(cnt.sum()) == 70
  codes = jnp.argmin(((pts[:, None] - cent[None]) ** 2).sum(-1), -1)
  for k in range(4):
    sel = (codes == k) & (w > 0)
    if sel.any():  # every centroid is the mean of the points it owns
      np.testing.assert_allclose(cent[k], pts[sel].mean(0), atol=1e-4)
  np.testing.assert_allclose(sums, cent * cnt[:, None], atol=1e-4)
  inertia = lambda c: float(jnp.sum(
      w * jnp.min(((pts[:, None] - c[None]) ** 2).sum(-1), -1)))
  assert inertia(cent) < inertia(pts[10:14])


def test_kmeans_init_from_gathered_vectors_and_without_it(tiny):
  """With ``kmeans_init_vectors`` the codebooks stay random until that many
  input vectors have been seen, then every level is fitted on all of them
  (not on the last batch alone); with ``kmeans_init`` off they stay random
  and EMA-update from the first step."""
  q = tiny.rvq.copy_and_resolve_references()
  q.update(codebook_size=4, codebook_dim=2, kmeans_init_vectors=60,
           kmeans_iters=8)
  rvq = ResidualVQ(2, 2, q, rngs=nnx.Rngs(0))
  rvq.in_proj.kernel[...] = jnp.eye(2)  # quantize the input itself
  graphdef, state = nnx.split(rvq)

  @jax.jit
  def train(state, x, rng):
    m = nnx.merge(graphdef, state)
    m(x, rng=rng, update=True)
    return nnx.state(m)

  # Four well-separated clusters, each seen in a different batch: only a
  # fit on all the gathered batches puts a code on every cluster.
  centres = np.array([[10, 0], [-10, 0], [0, 10], [0, -10]], np.float32)
  rng = np.random.default_rng(0)
  batches = [centres[i] + 0.1 * rng.standard_normal((1, 20, 2))
             for i in (0, 1, 2)] + [centres[3] + 0.1 * rng.standard_normal(
                 (1, 20, 2))]
  random_books = np.asarray(state["codebook"][...])
  s = state
  for i, b in enumerate(batches[:2]):
    s = train(s, jnp.asarray(b, jnp.float32), jax.random.key(i))
    assert not bool(s["initialized"][...])
    np.testing.assert_array_equal(np.asarray(s["codebook"][...]),
                                  random_books)
  s = train(s, jnp.asarray(batches[2], jnp.float32), jax.random.key(2))
  assert bool(s["initialized"][...])
  level0 = np.asarray(s["codebook"][...][0])
  # Fitted on batches 0-2: codes on clusters 0, 1 and 2 (the fourth code
  # lands on one of them), none yet on cluster 3.
  dist = np.linalg.norm(level0[:, None] - centres[None], axis=-1)
  assert np.all(dist.min(0)[:3] < 1.0) and dist.min(0)[3] > 5.0

  q.kmeans_init = False
  rvq = ResidualVQ(2, 2, q, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(rvq)
  assert bool(state["initialized"][...])
  s = train(state, jnp.asarray(batches[0], jnp.float32), jax.random.key(0))
  # No k-means: the first step is one EMA step from the random codebook,
  # which moves the nearest code only part of the way to the cluster.
  level0 = np.asarray(s["codebook"][...][0])
  assert np.linalg.norm(level0 - centres[0], axis=-1).min() > 5.0
  assert not np.array_equal(level0, np.asarray(state["codebook"][...][0]))


def test_bypassed_examples_pass_their_latent_unquantized(tiny):
  """Mimi's quantization rate: an example with ``bypass`` gets the
  projections' round trip of its latent, the others their code vectors,
  and the codes and codebook updates are the same either way."""
  rvq = ResidualVQ(6, 3, tiny.rvq, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(rvq)
  x = jax.random.normal(jax.random.key(1), (4, 10, 6))

  def run(bypass):
    m = nnx.merge(graphdef, state)
    out, codes, _ = m(x, rng=jax.random.key(2), update=True, bypass=bypass)
    return out, codes, nnx.state(m)["codebook"][...]

  quantized, codes, cb = run(None)
  mixed, codes2, cb2 = run(jnp.array([1.0, 0.0, 1.0, 0.0]))
  m = nnx.merge(graphdef, state)
  round_trip = m.out_proj(m.in_proj(x))
  np.testing.assert_allclose(mixed[0::2], round_trip[0::2], atol=1e-5)
  np.testing.assert_allclose(mixed[1::2], quantized[1::2], atol=1e-5)
  assert not np.allclose(quantized[0], round_trip[0], atol=1e-3)
  assert np.array_equal(np.asarray(codes), np.asarray(codes2))
  np.testing.assert_allclose(cb, cb2)
