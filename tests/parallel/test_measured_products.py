"""The products the benchmarks compare against: counted and chained right."""

import jax.numpy as jnp

from csm_jax.model.loss import count_flops, dense_products
from csm_jax.parallel import hardware
from tests.foundation.tiny import tiny_config


def test_training_products_are_timed_once_per_shape(monkeypatch):
  timed = []

  def best_time(fn, args, repeats):
    del fn, repeats
    timed.append(tuple(a.shape for a in args))
    return 1.0

  monkeypatch.setattr(hardware, "best_time", best_time)
  products = [(8, 4, 6), (8, 4, 6), (8, 6, 4)]
  assert hardware.measured_training_products(products) == 3.0
  # x, w and the output's gradient of each distinct product.
  assert timed == [((8, 4), (4, 6), (8, 6)), ((8, 6), (6, 4), (8, 4))]


def test_dense_products_are_the_counted_flops_less_attention():
  c = tiny_config()
  dense = 3 * sum(2 * r * k * o for r, k, o in dense_products(c, 2))
  total = count_flops(c, 2)
  # Attention scores are the rest, a small positive share at tiny dims.
  assert 0 < total - dense < 0.5 * total
  # Twice the batch, twice every product's rows.
  assert sorted(dense_products(c, 4)) == sorted(
      (2 * r, k, o) for r, k, o in dense_products(c, 2))


def test_product_chain_times_every_row_count():
  t = hardware.measured_product_chain([(16, 32), (32, 8)], rows=(1, 3),
                                      repeats=2, dtype=jnp.float32)
  assert sorted(t) == [1, 3] and all(v > 0 for v in t.values())
