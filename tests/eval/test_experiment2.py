"""Experiment 2's parts that need no training: the seven configurations,
equal compute, and the paired summary."""

import numpy as np
import pytest

from csm_jax.config import memory as memory_config
from csm_jax.eval import experiment2 as e2
from csm_jax.config import preset


def _base():
  return preset("debug", None)


def test_every_configuration_is_valid_and_changes_what_it_names():
  base = _base()
  cfgs = {n: e2.variant_config(base, "/base", n, 10) for n in e2.VARIANTS}
  assert not memory_config.enabled(cfgs["no_memory"].model)
  assert all(memory_config.enabled(c.model) for n, c in cfgs.items()
             if n != "no_memory")
  mem = {n: c.model.memory for n, c in cfgs.items()}
  assert mem["semantic_only"].prosodic.slots == 0
  assert mem["prosodic_only"].semantic.slots == 0
  assert memory_config.decays(mem["equal_gamma"].semantic) == \
      memory_config.decays(mem["equal_gamma"].prosodic)
  assert memory_config.decays(mem["swapped_gamma"].semantic) == \
      memory_config.decays(mem["dual"].prosodic)
  assert set(memory_config.decays(mem["no_decay"].prosodic)) == {1.0}
  for c in cfgs.values():
    assert c.data.corpus_size == "long" and c.train.init_from == "/base"


def test_every_configuration_is_valid_on_the_aligned_default():
  from configs import debug  # pylint: disable=import-outside-toplevel
  base = debug.get_config()
  assert base.model.text_stream == "aligned"
  for n in e2.VARIANTS:   # variant_config validates each
    c = e2.variant_config(base, "/base", n, 10)
    assert c.model.text_stream == "aligned" and c.data.corpus_size == "long"
    assert memory_config.enabled(c.model) == (n != "no_memory")


def test_equal_compute_gives_the_cheaper_baseline_more_steps():
  steps = e2.equal_compute_steps(_base(), "/base", 100, list(e2.VARIANTS))
  assert steps["dual"] == 100 and steps["no_memory"] > 100
  base = _base()
  flops = {n: e2.step_flops(e2.variant_config(base, "/b", n, steps[n]))
           * steps[n] for n in steps}
  assert all(abs(f / flops["dual"] - 1) < 0.02 for f in flops.values())


def test_the_summary_pairs_turns_against_the_baseline():
  base = e2.Scored([0.1, 0.2, np.nan, 0.3], [2, 3, 4, 5], ["a"] * 4,
                   [0.1] * 4, [1.0] * 4)
  better = e2.Scored([0.2, 0.4, 0.5, 0.6], [2, 3, 4, 5], ["a"] * 4,
                     [0.1] * 4, [1.0] * 4)
  out = e2.summarize({"no_memory": base, "dual": better}, seed=0)
  # Only the turns both scored count: (0.2 + 0.4 + 0.6) / (0.1 + 0.2 + 0.3).
  assert out["dual"]["ratio_to_no_memory"]["value"] == pytest.approx(2.0)
  assert out["dual"]["difference_to_no_memory"]["value"] == pytest.approx(0.2)
  assert out["dual"]["per_turn"] == {2: 0.2, 3: 0.4, 4: 0.5, 5: 0.6}
  assert "ratio_to_no_memory" not in out["no_memory"]


def test_an_unknown_configuration_is_named():
  with pytest.raises(e2.EvaluationError, match="unknown configuration 'x'"):
    e2.run_experiment2("/nowhere", "/tmp/x", variants=["x"])
