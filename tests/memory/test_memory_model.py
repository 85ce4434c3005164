"""The dual memory's state updates: decays, bank independence, constant cost,
training == generation, the gradient's depth and foreign states."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import memory as memory_config
from csm_jax.config.errors import UserError
from csm_jax.model import memory as memory_lib
from csm_jax.model.layers import Precision
from tests.memory.helpers import (batch_of, build, memory_config as cfg,
                                  one_turn, turn_window)


def _bank(slots=3, fast=0.5, slow=0.9, learned=False):
  b = cfg().model.memory.semantic
  b.slots, b.decay_fast, b.decay_slow, b.learned = slots, fast, slow, learned
  return memory_lib.MemoryBank(b, 8, 4, Precision(), nnx.Rngs(params=0)), b


def test_configured_decays_are_geometric_in_one_minus_gamma():
  _, b = _bank(3, 0.5, 0.875)
  np.testing.assert_allclose(memory_config.decays(b), [0.5, 0.75, 0.875],
                             rtol=0, atol=1e-12)


@pytest.mark.parametrize("learned", [False, True])
def test_each_slot_decays_by_exactly_its_gamma(learned):
  bank, b = _bank(3, 0.5, 0.875, learned)
  gammas = np.asarray(memory_config.decays(b), np.float32)
  np.testing.assert_allclose(bank.gamma(), gammas, rtol=1e-6)
  rng = np.random.default_rng(0)
  f1 = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
  f2 = jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32)
  ok = jnp.ones((2,), bool)
  g = np.asarray(bank.gamma())[None, :, None]
  m1 = bank.write(jnp.zeros((2, 3, 4)), f1, ok)
  np.testing.assert_allclose(m1, (1 - g) * f1, rtol=1e-6)
  m2 = bank.write(m1, f2, ok)
  np.testing.assert_allclose(m2, g * m1 + (1 - g) * f2, rtol=1e-6, atol=1e-7)
  # With nothing new written (f = 0) a slot keeps exactly gamma of itself.
  m3 = bank.write(m2, jnp.zeros_like(f2), ok)
  ratio = np.asarray(m3) / np.asarray(m2)
  np.testing.assert_allclose(ratio, np.broadcast_to(g, ratio.shape),
                             rtol=1e-6)
  # An invalid turn leaves the memory as it was.
  np.testing.assert_array_equal(
      bank.write(m2, f1, jnp.zeros((2,), bool)), m2)


def test_readout_is_the_decay_weighted_mean_of_the_turns():
  bank, _ = _bank(3, 0.5, 0.9)
  f = jnp.asarray(np.random.default_rng(1).normal(size=(1, 3, 4)), jnp.float32)
  m, ok = jnp.zeros((1, 3, 4)), jnp.ones((1,), bool)
  for n in range(1, 6):
    m = bank.write(m, f, ok)
    np.testing.assert_allclose(bank.readout(m, jnp.asarray([n])), f,
                               rtol=1e-5, atol=1e-6)
  assert not np.any(bank.readout(m, jnp.asarray([0])))


def test_the_banks_are_independent():
  c = cfg()
  model = build(c)
  mem = model.memory
  window = turn_window(batch_of(c, n=2))
  turn = one_turn(window, window["valid"].shape[1] - 1)
  update = _jitted_update(model)[0]
  base = update(mem.init_state(2), turn)
  # The prosody features reach the prosodic bank only.
  moved = update(mem.init_state(2), dict(turn, features=turn["features"] + 1))
  np.testing.assert_array_equal(moved.semantic, base.semantic)
  assert not np.allclose(moved.prosodic, base.prosodic)
  # The audio frames come after the text rows: new codes move the prosodic
  # bank and leave the semantic bank (text rows) exactly as it was.
  audio = np.asarray(turn["audio_tokens"]).copy()
  audio[..., 0] = (audio[..., 0] + 7) % c.model.codebook_size
  moved = update(mem.init_state(2), dict(turn, audio_tokens=audio))
  np.testing.assert_array_equal(moved.semantic, base.semantic)
  assert not np.allclose(moved.prosodic, base.prosodic)
  # One bank's parameters and decays never touch the other's state.
  mem.semantic.write_proj[...] = mem.semantic.write_proj[...] * 2.0
  mem.semantic.fixed = (0.1,) * mem.semantic.slots
  moved = _jitted_update(model)[0](mem.init_state(2), turn)
  np.testing.assert_array_equal(moved.prosodic, base.prosodic)
  assert not np.allclose(moved.semantic, base.semantic)


def _jitted_update(model):
  graphdef, state = nnx.split(model)
  traces = []

  @jax.jit
  def update(params, mem_state, turn):
    traces.append(1)  # runs once per trace (compile), not per call
    return memory_lib.update(nnx.merge(graphdef, params), mem_state, turn)

  return lambda s, t: update(state, s, t), traces, update


def test_twenty_turns_cost_what_two_cost_per_turn():
  c = cfg()
  model = build(c)
  update, traces, jitted = _jitted_update(model)
  turns = []
  for start in range(0, 20, 4):
    w = turn_window(batch_of(c, n=2, start=start))
    turns += [one_turn(w, j) for j in range(w["valid"].shape[1])]
  turns = turns[:20]
  state = model.memory.init_state(2)
  shapes = jax.tree.map(lambda x: x.shape, state)
  for i, turn in enumerate(turns):
    state = update(state, turn)
    assert jax.tree.map(lambda x: x.shape, state) == shapes
    if i == 1:
      after_two = len(traces)
  assert after_two == 1 and len(traces) == 1  # one compiled function
  assert jitted._cache_size() == 1
  assert int(state.turns.max()) <= 20 and int(state.turns.max()) > 2
  # Same executable, so the same FLOPs whatever the turns before.
  graph_state = nnx.split(model)[1]
  flops = [jitted.lower(graph_state, s, turns[0]).compile().cost_analysis()
           for s in (model.memory.init_state(2), state)]
  assert flops[0].get("flops") == flops[1].get("flops")


def test_training_window_equals_turn_by_turn_updates():
  c = cfg()
  model = build(c)
  window = turn_window(batch_of(c, n=3))
  graphdef, params = nnx.split(model)
  trained, _ = jax.jit(lambda p, w: memory_lib.memory_from_turns(
      nnx.merge(graphdef, p), w, 2))(params, window)
  update = _jitted_update(model)[0]
  state = model.memory.init_state(3)
  for j in range(window["valid"].shape[1]):
    state = update(state, one_turn(window, j))
  np.testing.assert_array_equal(trained.turns, state.turns)
  for name in ("semantic", "prosodic"):
    np.testing.assert_allclose(getattr(trained, name), getattr(state, name),
                               rtol=2e-5, atol=2e-6)
  assert np.asarray(window["valid"]).sum(1).tolist() == \
      np.asarray(state.turns).tolist()


def test_gradient_reaches_the_backbone_through_the_newest_turns_only():
  c = cfg()
  model = build(c)
  window = turn_window(batch_of(c, n=2, start=3))
  k = window["valid"].shape[1]
  graphdef, params = nnx.split(model, nnx.Param)

  def total(p, w, grad_turns):
    state, _ = memory_lib.memory_from_turns(nnx.merge(graphdef, p), w,
                                            grad_turns)
    return jnp.sum(state.semantic) + jnp.sum(state.prosodic)

  grad = jax.jit(jax.grad(total), static_argnums=2)

  def grads(grad_turns, only_turn):
    # One valid turn: the others write nothing.
    valid = np.zeros_like(window["valid"])
    valid[:, only_turn] = True
    g = grad(params, dict(window, valid=valid), grad_turns)
    return (np.abs(g["backbone"]["layers"]["mlp"]["up"]["kernel"][...]).sum(),
            np.abs(g["memory"]["prosodic"]["write_proj"][...]).sum())

  oldest, newest = 0, k - 1
  assert grads(1, only_turn=oldest)[0] == 0.0        # read without gradient
  assert grads(1, only_turn=oldest)[1] > 0.0         # the bank still learns
  assert grads(1, only_turn=newest)[0] > 0.0
  assert grads(k, only_turn=oldest)[0] > 0.0
  assert grads(0, only_turn=newest)[0] == 0.0
  # The depth of the gradient never changes the values.
  run = jax.jit(lambda p, w, g: memory_lib.memory_from_turns(
      nnx.merge(graphdef, p), w, g)[0], static_argnums=2)
  a, b = run(params, window, 0), run(params, window, k)
  np.testing.assert_allclose(a.prosodic, b.prosodic, rtol=1e-6, atol=1e-7)


def test_a_state_of_another_memory_config_is_refused():
  assert issubclass(memory_lib.MemoryStateError, UserError)
  model = build(cfg())
  state = model.memory.init_state(2)
  model.memory.check_state(state)
  other = build(cfg(semantic__slots=2, semantic__decay_slow=0.9))
  with pytest.raises(memory_lib.MemoryStateError, match="memory config"):
    other.memory.check_state(state)
  wide = build(cfg(dim=8))
  with pytest.raises(memory_lib.MemoryStateError, match="memory config"):
    wide.memory.check_state(state)
  forged = memory_lib.MemoryState(state.semantic[:, :1], state.prosodic,
                                  state.turns, state.signature)
  with pytest.raises(memory_lib.MemoryStateError, match="'semantic'"):
    model.memory.check_state(forged)
  with pytest.raises(memory_lib.MemoryStateError, match="MemoryState"):
    model.memory.check_state({"semantic": state.semantic})
  # Saved and loaded as plain arrays, a state keeps its signature.
  back = memory_lib.state_from_numpy(memory_lib.state_to_numpy(state))
  model.memory.check_state(back)
  with pytest.raises(memory_lib.MemoryStateError):
    other.memory.check_state(back)


def test_a_slot_without_decay_keeps_the_plain_mean():
  bank, _ = _bank(2, 1.0, 1.0, False)
  np.testing.assert_array_equal(bank.gamma(), [1.0, 1.0])
  rng = np.random.default_rng(1)
  fs = [jnp.asarray(rng.normal(size=(1, 2, 4)), jnp.float32)
        for _ in range(5)]
  m = jnp.zeros((1, 2, 4))
  for f in fs:
    m = bank.write(m, f, jnp.ones((1,), bool))
  read = bank.readout(m, jnp.asarray([5]))
  np.testing.assert_allclose(read, np.mean(np.stack(fs), axis=0), rtol=1e-5,
                             atol=1e-6)
  # Below 1 the same slots would forget: the readout weights turns unequally.
  fading, _ = _bank(2, 0.5, 0.9, False)
  m = jnp.zeros((1, 2, 4))
  for f in fs:
    m = fading.write(m, f, jnp.ones((1,), bool))
  assert not np.allclose(fading.readout(m, jnp.asarray([5])),
                         np.mean(np.stack(fs), axis=0), atol=1e-3)


def test_a_bank_of_zero_slots_is_off():
  c = cfg(semantic__slots=0)
  memory_config.validate(c, _raise)
  model = build(c)
  mem = model.memory
  assert mem.n_prefix == c.model.memory.prosodic.slots
  names = {".".join(map(str, p)) for p, _ in nnx.to_flat_state(
      nnx.state(model, nnx.Param))}
  assert not any(n.startswith("memory.semantic.") for n in names)
  assert any(n.startswith("memory.prosodic.") for n in names)
  state = mem.init_state(2)
  assert state.semantic.shape == (2, 0, mem.dim)
  assert mem.prefix(state).shape == (2, mem.n_prefix, c.model.backbone.width)
  both_off = cfg(semantic__slots=0, prosodic__slots=0)
  with pytest.raises(ValueError, match="both banks are off"):
    memory_config.validate(both_off, _raise)


@pytest.mark.parametrize("fields,message", [
    (dict(semantic__decay_fast=0.5, semantic__decay_slow=1.0),
     "without decay has decay_fast = decay_slow = 1"),
    (dict(prosodic__decay_fast=1.0, prosodic__decay_slow=1.0,
          prosodic__learned=True), "learned decay is a sigmoid"),
    (dict(semantic__decay_fast=1.2, semantic__decay_slow=1.2),
     r"in \(0, 1\]")])
def test_decays_of_one_are_checked(fields, message):
  with pytest.raises(ValueError, match=message):
    memory_config.validate(cfg(**fields), _raise)


def _raise(cond, field, message):
  if not cond:
    raise ValueError(f"{field}: {message}")
