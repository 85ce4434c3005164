"""``model.memory`` off is the plain CSM; the config block is validated."""

import jax
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import schema
from csm_jax.config.presets import apply_overrides
from csm_jax.model.csm import CSM
from csm_jax.store import models
from tests.foundation.tiny import tiny_config
from tests.memory.helpers import memory_config


def _without_memory_field(c):
  """The config as runs from before the memory saved it: no block at all."""
  c = c.copy_and_resolve_references()
  c.unlock()
  del c.model["memory"]
  c.lock()
  return c


def _inputs(c):
  from csm_jax.data.examples.synthetic_tokens import SyntheticTokenSource
  src = SyntheticTokenSource(c, 2, 0)
  return {k: np.stack([src[i][k] for i in range(2)]) for k in src[0]}


def _flat(model):
  _, state = nnx.split(model, nnx.Param)
  return models.flatten(state)


def _forward(model, b):
  return model(b["audio_tokens"], b["text_tokens"], b["mask"],
               b["positions"], b["segment_ids"])


def test_memory_off_is_the_model_without_the_block():
  c = tiny_config()
  assert c.model.memory.enabled is False
  old = _without_memory_field(c)
  m_new, m_old = CSM(c.model, nnx.Rngs(params=0)), CSM(old.model,
                                                      nnx.Rngs(params=0))
  assert m_new.memory is None
  a, b = _flat(m_new), _flat(m_old)
  assert sorted(a) == sorted(b)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  batch = _inputs(c)
  (h1, l1), (h2, l2) = _forward(m_new, batch), _forward(m_old, batch)
  np.testing.assert_array_equal(l1, l2)
  np.testing.assert_array_equal(h1, h2)
  # And a run from before the field compares equal to one with it off.
  assert schema.structural_fields(c) == schema.structural_fields(old)
  assert "memory" not in schema.structural_fields(c)["model"]


def test_memory_on_only_adds_its_own_parameters():
  off = _flat(CSM(memory_config(enabled=False).model, nnx.Rngs(params=0)))
  on = _flat(CSM(memory_config(enabled=True).model, nnx.Rngs(params=0)))
  added = sorted(set(on) - set(off))
  assert added and all(k.startswith("memory.") for k in added)
  assert set(off) <= set(on)
  for k in off:  # the same initial values: the memory is created last
    np.testing.assert_array_equal(on[k], off[k], err_msg=k)


def test_memory_parameters_carry_logical_axes():
  model = CSM(memory_config().model, nnx.Rngs(params=0))
  for path, var in nnx.iter_graph(model.memory):
    if isinstance(var, nnx.Param):
      axes = var.get_metadata().get("logical_axes")
      assert axes is not None and len(axes) == var.get_value().ndim, path


def test_structural_fields_record_the_memory_when_on():
  c = memory_config()
  s = schema.structural_fields(c)["model"]["memory"]
  assert s["semantic"]["slots"] == c.model.memory.semantic.slots
  c2 = memory_config(grad_turns=0, turns=3, semantic_weight=1.0)
  # Training fields do not change what the checkpoint holds.
  assert schema.structural_fields(c2) == schema.structural_fields(c)
  c3 = memory_config(prosodic__decay_slow=0.99)
  assert schema.structural_fields(c3) != schema.structural_fields(c)


@pytest.mark.parametrize("override, field", [
    ("model.memory.semantic.decay_fast=1.5", "model.memory.semantic.decay_fast"),
    ("model.memory.prosodic.decay_slow=0.5", "model.memory.prosodic.decay_slow"),
    ("model.memory.semantic.slots=65", "model.memory.semantic.slots"),
    ("model.memory.grad_turns=9", "model.memory.grad_turns"),
    ("model.memory.turn_rows=2", "model.memory.turn_rows"),
    ("model.memory.dynamics_weight=-1.0", "model.memory.dynamics_weight"),
    ("model.memory.character_temperature=0.0",
     "model.memory.character_temperature"),
    ("model.memory.semantic.slots=1", "model.memory.semantic.decay_slow"),
])
def test_bad_memory_values_name_the_field(override, field):
  c = memory_config()
  apply_overrides(c, override)
  with pytest.raises(schema.ConfigError) as e:
    schema.validate(c)
  assert str(e.value).startswith(f"config.{field}:"), str(e.value)


def test_loss_terms_need_the_memory_on():
  c = memory_config(enabled=False, character_weight=0.5)
  with pytest.raises(schema.ConfigError,
                     match="config.model.memory.character_weight:"):
    schema.validate(c)


def test_debug_config_takes_the_memory_from_the_command_line():
  from configs import debug  # pylint: disable=import-outside-toplevel
  c = debug.get_config("model.memory.enabled=True,model.memory.turns=6,"
                       "model.text_stream=prefix")
  schema.validate(c)
  assert c.model.memory.enabled and c.model.memory.turns == 6
  assert jax.tree.leaves(c.model.memory.to_dict())


def test_the_aligned_default_takes_the_memory():
  from configs import debug  # pylint: disable=import-outside-toplevel
  c = debug.get_config("model.memory.enabled=True")
  assert c.model.text_stream == "aligned"
  schema.validate(c)
  assert schema.structural_fields(c)["model"]["memory"]["enabled"]
