"""Hierarchical codebook training: critical codebooks always, detail sampled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import ConfigError, validate
from csm_jax.model.loss import csm_loss, sample_levels
from csm_jax.training.run import make_task
from tests.foundation.test_model import _batch, _model
from tests.foundation.tiny import tiny_config


def test_sample_levels():
  np.testing.assert_array_equal(sample_levels(jax.random.key(0), 6, 0, 0),
                                [1, 2, 3, 4, 5])
  seen = set()
  for s in range(30):
    lv = np.asarray(sample_levels(jax.random.key(s), 8, 3, 2))
    assert list(lv[:2]) == [1, 2]               # critical 1..C-1 always
    assert len(set(lv[2:])) == 2 and all(3 <= x <= 7 for x in lv[2:])
    assert list(lv[2:]) == sorted(lv[2:])
    seen.update(lv[2:].tolist())
  assert seen == {3, 4, 5, 6, 7}                # every detail level is drawn


def test_all_detail_levels_drawn_equals_the_full_loss():
  c = tiny_config()
  model, batch = _model(c), _batch(c)
  n = c.model.n_codebooks
  full, mf = csm_loss(model, batch, jax.random.key(3), 0.5, 0.1)
  hier, mh = csm_loss(model, batch, jax.random.key(3), 0.5, 0.1,
                      critical_codebooks=2, detail_per_step=n - 2)
  np.testing.assert_allclose(hier, full, rtol=1e-5)
  np.testing.assert_allclose(mh["loss/cb1"], mf["loss/cb1"], rtol=1e-5)
  assert "loss/cb2" not in mh and "loss/detail_sampled" in mh


def test_sampled_total_is_unbiased_over_the_draws():
  # Every frame trains the decoder (fraction 1), so the key only picks the
  # detail level: the mean over the possible draws is the full total.
  c = tiny_config()
  model, batch = _model(c), _batch(c)
  full, _ = csm_loss(model, batch, jax.random.key(0), 1.0)
  by_level = {}
  for s in range(40):
    key = jax.random.key(s)
    level = int(sample_levels(jax.random.fold_in(key, 1), 4, 2, 1)[-1])
    total, _ = csm_loss(model, batch, key, 1.0, critical_codebooks=2,
                        detail_per_step=1)
    by_level.setdefault(level, []).append(float(total))
  assert set(by_level) == {2, 3}
  for v in by_level.values():
    np.testing.assert_allclose(v, v[0], rtol=1e-5)  # same draw, same loss
  mean = np.mean([v[0] for v in by_level.values()])
  np.testing.assert_allclose(mean, float(full), rtol=1e-5)
  assert abs(by_level[2][0] - by_level[3][0]) > 1e-6  # the draw matters


def test_heads_of_undrawn_levels_get_no_gradient():
  c = tiny_config()
  model, batch = _model(c), _batch(c)
  graphdef, params = nnx.split(model)
  key = jax.random.key(5)
  drawn = int(sample_levels(jax.random.fold_in(key, 1), 4, 2, 1)[-1])

  def loss(p):
    return csm_loss(nnx.merge(graphdef, p), batch, key, 0.5,
                    critical_codebooks=2, detail_per_step=1)[0]

  g = jax.grad(loss)(params)["audio_head"][...]
  norms = np.asarray(jnp.sqrt(jnp.sum(g ** 2, axis=(1, 2))))  # per codebook
  undrawn = {2, 3} - {drawn}
  assert norms[0] > 0 and norms[drawn - 1] > 0
  for level in undrawn:
    assert norms[level - 1] == 0


def test_task_trains_hierarchically_and_evaluates_every_codebook():
  c = tiny_config(model__critical_codebooks=2, model__detail_codebooks_per_step=1)
  validate(c, n_devices=1)
  task = make_task(c)
  model, batch = _model(c), _batch(c)
  losses, metrics = task.loss_fn(model, batch, jax.random.key(0), 0)
  assert np.isfinite(losses["model"]) and "loss/detail_sampled" in metrics
  ev = task.eval_fn(model, batch, jax.random.key(0))
  assert all(f"loss/cb{i}" in ev for i in range(c.model.n_codebooks))


@pytest.mark.parametrize("field,critical,detail", [
    ("model.critical_codebooks", 4, 1),        # not below n_codebooks=4
    ("model.detail_codebooks_per_step", 2, 0),
    ("model.detail_codebooks_per_step", 2, 3),  # only 2 detail codebooks
])
def test_bad_hierarchy_names_the_field(field, critical, detail):
  c = tiny_config(model__critical_codebooks=critical,
                  model__detail_codebooks_per_step=detail)
  with pytest.raises(ConfigError, match=field):
    validate(c, n_devices=1)
