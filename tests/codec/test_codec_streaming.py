"""Streaming (chunked, carried state) equals offline for every causal stage."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from csm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d
from csm_jax.codec.seanet import SEANetDecoder, SEANetEncoder
from csm_jax.codec.transformer import Transformer


def _jit(mod):
  """The module's offline call, jitted (params passed, not baked in)."""
  graphdef, params = nnx.split(mod)
  f = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  return lambda x: f(params, x)


def _chunked(mod, x, sizes):
  # Jitted once per chunk length: eager op-by-op dispatch is far slower.
  graphdef, params = nnx.split(mod)
  step = jax.jit(lambda p, x, s: nnx.merge(graphdef, p).step(x, s))
  state, outs, i = mod.init_state(x.shape[0]), [], 0
  for n in sizes:
    y, state = step(params, x[:, i:i + n], state)
    outs.append(y)
    i += n
  assert i == x.shape[1]
  return jnp.concatenate(outs, axis=1)


@pytest.mark.parametrize("kernel,stride,dilation", [(3, 1, 1), (7, 1, 3),
                                                    (8, 4, 1), (5, 2, 2)])
def test_causal_conv_streaming_and_causality(kernel, stride, dilation):
  conv = CausalConv1d(3, 5, kernel, stride=stride, dilation=dilation,
                      rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(0), (2, 24 * stride, 3))
  conv_f = _jit(conv)
  y = conv_f(x)
  assert y.shape == (2, 24, 5)
  sizes = [s * stride for s in (1, 5, 2, 16)]
  np.testing.assert_allclose(_chunked(conv, x, sizes), y, atol=1e-5)
  # Changing the future leaves earlier outputs untouched.
  x2 = x.at[:, 12 * stride:].set(1.0)
  np.testing.assert_array_equal(conv_f(x2)[:, :12], y[:, :12])
  assert not np.allclose(conv_f(x2)[:, 12:], y[:, 12:])


@pytest.mark.parametrize("kernel,stride", [(8, 4), (4, 2), (5, 2), (3, 3)])
def test_conv_transpose_streaming(kernel, stride):
  conv = CausalConvTranspose1d(3, 4, kernel, stride=stride, rngs=nnx.Rngs(1))
  x = jax.random.normal(jax.random.key(1), (2, 13, 3))
  conv_f = _jit(conv)
  y = conv_f(x)
  assert y.shape == (2, 13 * stride, 4)
  np.testing.assert_allclose(_chunked(conv, x, [1, 4, 3, 5]), y, atol=1e-5)
  x2 = x.at[:, 7:].set(0.0)
  np.testing.assert_array_equal(conv_f(x2)[:, :7 * stride], y[:, :7 * stride])


def test_seanet_streaming(tiny):
  enc = SEANetEncoder(tiny, rngs=nnx.Rngs(0))
  dec = SEANetDecoder(tiny, rngs=nnx.Rngs(1))
  stride = int(np.prod(tiny.ratios))
  x = jax.random.normal(jax.random.key(2), (2, 12 * stride, 1))
  z = _jit(enc)(x)
  assert z.shape == (2, 12, tiny.latent_dim)
  np.testing.assert_allclose(
      _chunked(enc, x, [stride, 3 * stride, 8 * stride]), z, atol=1e-5)
  y = _jit(dec)(z)
  assert y.shape == (2, 12 * stride, 1)
  np.testing.assert_allclose(_chunked(dec, z, [2, 1, 9]), y, atol=1e-5)


def _transformer(context=4, layers=2):
  t = ml_collections.ConfigDict(dict(
      enabled=True, layers=layers, width=16, heads=2, mlp_ratio=2,
      context=context, rope_base=10_000.0, layer_scale=1.0))
  return Transformer(12, t, rngs=nnx.Rngs(3))


def test_transformer_streaming_equals_offline():
  tr = _transformer()
  tr_f = _jit(tr)
  x = jax.random.normal(jax.random.key(3), (2, 19, 12))
  y = tr_f(x)
  np.testing.assert_allclose(_chunked(tr, x, [1, 2, 2, 1, 2, 2, 1, 8]), y,
                             atol=1e-5)
  np.testing.assert_allclose(_chunked(tr, x, [1] * 19), y, atol=1e-5)


def test_transformer_context_window():
  tr = _transformer(context=4, layers=2)
  tr_f = _jit(tr)
  x = jax.random.normal(jax.random.key(4), (1, 19, 12))
  y = tr_f(x)
  # Two layers of 4-frame windows see 2 * (4 - 1) = 6 frames back, no more.
  far = x.at[:, :18 - 6].set(0.0)
  np.testing.assert_allclose(tr_f(far)[:, 18], y[:, 18], atol=1e-6)
  near = x.at[:, 18 - 6].set(0.0)
  assert not np.allclose(tr_f(near)[:, 18], y[:, 18], atol=1e-4)
  future = x.at[:, 10:].set(0.0)
  np.testing.assert_allclose(tr_f(future)[:, :10], y[:, :10], atol=1e-6)
