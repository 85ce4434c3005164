"""``--latency_budget_ms``: the most levels whose measured time to first
audio fits the budget, measured from all levels down."""

import pytest

from csm_jax.inference import latency
from csm_jax.inference.generator import Sampling
from tests.memory.test_prefix_cache import _gen

pytestmark = pytest.mark.filterwarnings(
    "ignore::csm_jax.data.examples.frames.ContextTrimmed")


def test_a_generous_budget_keeps_every_level_and_a_tiny_one_is_not_met():
  gen = _gen()
  s = Sampling(frames_per_call=2)
  wide = latency.choose_levels(gen, s, 1e6, "hello")
  assert wide.met and wide.levels == gen.n
  assert list(wide.measured_ms) == [gen.n]
  tight = latency.choose_levels(gen, s, 1e-6, "hello")
  assert not tight.met and tight.levels == 1
  # Every level count was measured, from all of them down to one.
  assert list(tight.measured_ms) == list(range(gen.n, 0, -1))
  assert "is not met" in tight.line() and tight.to_json()["levels"] == 1


def test_the_budget_picks_the_most_levels_that_fit(monkeypatch):
  gen = _gen()
  times = {4: 50.0, 3: 40.0, 2: 25.0, 1: 10.0}
  monkeypatch.setattr(latency, "_first_audio_ms", lambda g, t, spk, s:
                      times[s.n_levels or g.n])
  got = latency.choose_levels(gen, Sampling(), 30.0, "hello")
  assert got.met and got.levels == 2
  assert got.measured_ms == {4: 50.0, 3: 40.0, 2: 25.0}
  with pytest.raises(ValueError):
    latency.choose_levels(gen, Sampling(), 0.0, "hello")
