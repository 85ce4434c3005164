"""The conversational loss terms: definitions, weights, separate logging."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.model import memory_loss
from csm_jax.training.tasks.csm import CSMTask
from tests.memory.helpers import batch_of, build, memory_config

F = 9


def _identity_heads():
  ident = lambda x: jnp.asarray(x, jnp.float32)
  return types.SimpleNamespace(semantic_head=ident, speaker_head=ident,
                               dynamics_head=lambda x: x[..., :F])


def _rows(b, t=6, on=True):
  r = np.zeros((b, t), bool)
  r[:, 2:] = on
  return r


def test_semantic_term_is_one_minus_cosine():
  mem = _identity_heads()
  target = np.eye(4, 8, dtype=np.float32)
  batch = {"memory_target_semantic": target, "memory_target_rows": _rows(4)}
  loss, n = memory_loss.semantic_term(mem, jnp.asarray(3.0 * target), batch)
  assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(n) == 4
  loss, _ = memory_loss.semantic_term(mem, jnp.asarray(-target), batch)
  assert float(loss) == pytest.approx(2.0, abs=1e-6)
  # Orthogonal prediction: 1; an example with no vector or no rows: skipped.
  pred = np.roll(target, 1, axis=1)
  batch["memory_target_semantic"] = target.copy()
  batch["memory_target_semantic"][0] = 0.0
  batch["memory_target_rows"][1] = False
  loss, n = memory_loss.semantic_term(mem, jnp.asarray(pred), batch)
  assert float(loss) == pytest.approx(1.0, abs=1e-6) and float(n) == 2


def _dyn_batch(prev, cur, present=True):
  b, k = prev.shape[0], 3
  feats = np.zeros((b, k, F), np.float32)
  feats[:, -1] = prev
  return {"memory_features": feats,
          "memory_features_present": np.full((b, k), present),
          "memory_valid": np.ones((b, k), bool),
          "memory_target_features": cur.astype(np.float32),
          "memory_target_features_present": np.ones((b,), bool),
          "memory_target_rows": _rows(b)}


def test_dynamics_term_compares_the_predicted_and_the_real_change():
  rng = np.random.default_rng(0)
  prev, cur = rng.normal(size=(3, F)), rng.normal(size=(3, F))
  batch = _dyn_batch(prev, cur)
  change = jnp.asarray(cur - prev, jnp.float32)
  readout = jnp.zeros((3, 2, 4))
  loss, n, base = memory_loss.dynamics_term(_identity_heads(), change,
                                            readout, batch)
  assert float(loss) == pytest.approx(0.0, abs=1e-6) and float(n) == 3
  assert float(base) == pytest.approx(np.mean((cur - prev) ** 2), rel=1e-5)
  loss, _, _ = memory_loss.dynamics_term(_identity_heads(), change + 1.0,
                                         readout, batch)
  assert float(loss) == pytest.approx(1.0, rel=1e-5)
  # Without the previous turn's features there is no change to predict.
  loss, n, _ = memory_loss.dynamics_term(
      _identity_heads(), change, readout, _dyn_batch(prev, cur, False))
  assert float(n) == 0 and float(loss) == 0.0


def _char_batch(speakers, target):
  b, k = len(target), len(speakers[0])
  mask = np.zeros((b, k, 4, 3), bool)
  mask[..., 0] = True
  return {"memory_valid": np.ones((b, k), bool), "memory_mask": mask,
          "memory_speaker": np.asarray(speakers, np.int32),
          "memory_target_speaker": np.asarray(target, np.int32),
          "memory_target_rows": _rows(b)}


def test_character_term_prefers_the_speakers_own_history():
  # Memory turns of speakers 3, 5, 3; the target is speaker 3.
  voices = {3: np.array([1.0, 0.0]), 5: np.array([0.0, 1.0])}
  turns = np.stack([voices[s] for s in (3, 5, 3)])[None]
  batch = _char_batch([[3, 5, 3]], [3])
  mem = _identity_heads()
  near = jnp.asarray(voices[3][None])
  loss, n, acc = memory_loss.character_term(mem, near, jnp.asarray(turns),
                                            batch, 0.5)
  assert float(n) == 1 and float(acc) == 1.0
  # -log of the probability of the two same-speaker turns.
  logits = np.array([2.0, 0.0, 2.0])
  want = np.log(np.exp(logits).sum()) - np.log(np.exp(logits[[0, 2]]).sum())
  assert float(loss) == pytest.approx(want, rel=1e-5)
  far = jnp.asarray(voices[5][None])
  loss_far, _, acc_far = memory_loss.character_term(mem, far,
                                                    jnp.asarray(turns), batch,
                                                    0.1)
  assert float(acc_far) == 0.0 and float(loss_far) > 5.0
  # One speaker in the window, or none of the target's: nothing to tell.
  for spk, tgt in (([[3, 3, 3]], [3]), ([[5, 5, 5]], [3])):
    _, n, _ = memory_loss.character_term(mem, near, jnp.asarray(turns),
                                         _char_batch(spk, tgt), 0.1)
    assert float(n) == 0


def _task_loss(config, batch):
  task = CSMTask(config)
  model = build(config)
  losses, metrics = jax.jit(
      lambda b: task.loss_fn(model, b, jax.random.key(0), 0))(batch)
  return float(losses["model"]), {k: float(v) for k, v in metrics.items()}


TERMS = ("semantic", "dynamics", "character")


def test_each_term_is_off_at_zero_and_adds_its_weight_when_on():
  base_cfg = memory_config()
  batch = batch_of(base_cfg, n=4, start=2)
  base, m0 = _task_loss(base_cfg, batch)
  assert not any(f"loss/{t}" in m0 for t in TERMS)
  assert m0["memory/turns"] > 0
  for term in TERMS:
    c = memory_config(**{f"{term}_weight": 0.5})
    total, m = _task_loss(c, batch)
    assert f"loss/{term}" in m
    assert not any(f"loss/{t}" in m for t in TERMS if t != term)
    assert m[f"memory/{term}_examples"] > 0
    assert m[f"loss/{term}"] > 0
    assert total == pytest.approx(base + 0.5 * m[f"loss/{term}"], rel=1e-5)
    # The audio loss itself is untouched by the term's weight.
    assert m["loss/audio"] == pytest.approx(m0["loss/audio"], rel=1e-6)
