"""Experiment 1's pieces: the probe's examples see no frame of the next
word, the frozen-backbone features hold exactly each window, and the
feature probe learns what its features carry."""

import numpy as np
import pytest
from flax import nnx

from csm_jax.eval import experiment1
from csm_jax.eval.probe import ProbeTask, predict
from csm_jax.model.csm import CSM
from csm_jax.store import models
from csm_jax.training.trainer import Trainer
from tests.foundation.tiny import tiny_config


def _turn(n_frames, n_cb, seed):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 32, (n_frames, n_cb)).astype(np.int32)


def test_examples_end_at_the_word_and_name_the_next_one():
  codes = _turn(100, 4, 0)
  words = ["a", "b", "zz", "c"]
  ends = [10, 80, 90, 99]   # frame where each word ends
  vocab = {"b": 0, "c": 1}   # "zz" is not a common word
  ex, hist = experiment1._examples([(words, codes, ends)], vocab, 4)
  # a -> b (seen: frames 0..9) and zz -> c (frames 26..89, the last 64).
  assert ex["label"].tolist() == [0, 1]
  assert hist == [["a"], ["a", "b", "zz"]]
  v0 = ex["valid"][0]
  assert v0.sum() == 10 and v0[-10:].all()  # left-padded, right-aligned
  np.testing.assert_array_equal(ex["tokens"][0][-10:], codes[:10])
  np.testing.assert_array_equal(ex["tokens"][1], codes[90 - 64:90])
  # The shuffled twin holds the same frames in another order.
  sh, _ = experiment1._examples([(words, codes, ends)], vocab, 4,
                                shuffle_seed=3)
  a, b = ex["tokens"][1], sh["tokens"][1]
  assert not np.array_equal(a, b)
  assert sorted(map(tuple, a)) == sorted(map(tuple, b))


@pytest.fixture(scope="module")
def tiny_csm():
  c = tiny_config()
  return c, CSM(c.model, nnx.Rngs(params=0))


def test_backbone_features_hold_exactly_the_window(tiny_csm):
  c, model = tiny_csm
  n_cb, w = c.model.n_codebooks, 16
  tokens = np.stack([_turn(w, n_cb, s) for s in range(3)])
  valid = np.ones((3, w), bool)
  valid[0, :6] = False      # 10 frames, left-padded
  valid[2, :12] = False     # 4 frames
  f = experiment1.backbone_features(model, tokens, valid, batch=2)
  assert f.shape == (3, w, c.model.backbone.width)
  assert np.all(f[~valid] == 0) and np.all(np.isfinite(f))
  # Each window alone, unpadded, as the backbone reads a turn from its start.
  for i in range(3):
    t = tokens[i][valid[i]][None]
    n = t.shape[1]
    mask = np.ones((1, n, n_cb + 1), bool)
    mask[..., -1] = False
    h = model.backbone_hidden(t, np.zeros((1, n), np.int32), mask,
                              np.arange(n, dtype=np.int32)[None],
                              np.ones((1, n), np.int32))
    np.testing.assert_allclose(f[i][valid[i]], np.asarray(h[0]), atol=1e-5)
  # Padding frames' codes are never read; a later frame never changes an
  # earlier state.
  t2 = tokens.copy()
  t2[0, :6] = 0
  t2[1, 12:] = (t2[1, 12:] + 1) % 32
  g = experiment1.backbone_features(model, t2, valid, batch=2)
  np.testing.assert_allclose(g[0], f[0], atol=1e-6)
  np.testing.assert_allclose(g[1, :12], f[1, :12], atol=1e-6)
  assert not np.allclose(g[1, 12:], f[1, 12:])


def test_the_feature_probe_learns_what_its_features_carry(tmp_path):
  rng = np.random.default_rng(0)
  w, d, k = 8, 16, 3

  def data(n):
    label = rng.integers(0, k, n).astype(np.int32)
    x = rng.normal(0, 0.5, (n, w, d)).astype(np.float32)
    x[np.arange(n), :, label] += 1.0  # the class is one feature's mean
    valid = np.ones((n, w), bool)
    valid[:, :2] = False
    x[~valid] = 0
    return {"features": x, "valid": valid, "label": label}

  train, heldout = data(512), data(128)
  c = experiment1._probe_config(150, seed=0)
  c.train.eval_every = c.train.ckpt_every = 150
  task = ProbeTask(c, train, heldout, 1, 1, k, w, width=32, feature_dim=d)
  tr = Trainer(c, str(tmp_path / "probe"), task)
  tr.run()
  model = models.merge(tr.builder.graphdef, tr.state["params"],
                       tr.state["extra"], task.param_groups())
  acc = (predict(model, heldout["features"], heldout["valid"])
         == heldout["label"]).mean()
  assert acc > 0.9, acc


def test_trigram_plus_probe_multiplies_the_two_distributions():
  from csm_jax.eval.ngram import NGram
  lm = NGram(3).fit([["a", "b", "c"], ["a", "b", "d"], ["a", "b", "d"]])
  common = ["c", "d", "a"]
  lp = experiment1.ngram_log_probs(lm, [["a", "b"], ["x"]], common)
  # Renormalized over the probe's classes.
  np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-9)
  assert np.argmax(lp[0]) == 1   # "a b" -> "d" twice, "c" once
  uniform = np.log(np.full((2, 3), 1 / 3))
  # A uniform probe leaves the trigram's choice; a uniform trigram the probe's.
  np.testing.assert_array_equal(experiment1.fused(uniform, lp),
                                np.argmax(lp, -1))
  probe = np.log(np.asarray([[0.1, 0.1, 0.8], [0.7, 0.2, 0.1]]))
  np.testing.assert_array_equal(experiment1.fused(probe, uniform), [2, 0])
  # A confident probe overrides the trigram's preference; a hesitant one not.
  sure = np.log(np.asarray([[0.05, 0.05, 0.9]]))
  assert experiment1.fused(sure, lp[:1])[0] == 2
  unsure = np.log(np.asarray([[0.3, 0.3, 0.4]]))
  assert experiment1.fused(unsure, lp[:1])[0] == 1
