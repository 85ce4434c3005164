"""``layers.dense``: its hand-written CPU gradient is jnp.dot's gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.model.layers import _dense_cpu, dense


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5),
                                       (jnp.bfloat16, 2e-2)])
def test_dense_values_and_gradients_are_jnp_dot(dtype, tol):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, 5, 16)), dtype)
  w = jnp.asarray(rng.normal(size=(16, 24)) / 4, dtype)
  cot = jnp.asarray(rng.normal(size=(3, 5, 24)), dtype)
  f32 = lambda a: np.asarray(a, np.float32)
  np.testing.assert_allclose(f32(_dense_cpu(x, w)), f32(jnp.dot(x, w)),
                             rtol=tol, atol=tol)
  ours = jax.vjp(_dense_cpu, x, w)[1](cot)
  want = jax.vjp(jnp.dot, x, w)[1](cot)
  for got, ref in zip(ours, want):
    assert got.dtype == ref.dtype and got.shape == ref.shape
    np.testing.assert_allclose(f32(got), f32(ref), rtol=tol, atol=tol * 8)


def test_dense_under_jit_and_second_use_of_a_weight():
  """A weight used twice gets both gradients summed, as with jnp.dot."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(8, 8)), jnp.float32)
  loss = lambda f: jax.jit(jax.grad(
      lambda x, w: jnp.sum(jnp.tanh(f(f(x, w), w))), (0, 1)))
  for got, ref in zip(loss(dense)(x, w), loss(jnp.dot)(x, w)):
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
