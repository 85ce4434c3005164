"""Corpus planning and synthesis: determinism, labels, timing, sizes."""

import numpy as np
import pytest

from csm_jax.data.synthetic import dialogues as sd
from csm_jax.data.synthetic import voices


def test_plan_is_deterministic_and_prefix_stable():
  a = sd.plan_corpus(3, 300)
  b = sd.plan_corpus(3, 300)
  big = sd.plan_corpus(3, 900)
  other = sd.plan_corpus(4, 300)
  assert a == b
  assert big[: len(a)] == a and len(big) > len(a)
  assert [p.turns for p in other] != [p.turns for p in a]


def test_plan_structure():
  for p in sd.plan_corpus(0, 1200):
    assert 2 <= len(p.speaker_ids) <= 3 and len(set(p.speaker_ids)) == len(
        p.speaker_ids)
    assert 4 <= len(p.turns) <= 12
    assert p.arc in voices.ARC_NAMES
    spk = [t.speaker_id for t in p.turns]
    assert all(x != y for x, y in zip(spk, spk[1:]))
    assert set(spk) <= set(p.speaker_ids)
    assert all(t.emotion in voices.EMOTION_NAMES and t.text for t in p.turns)
    assert [t.turn_index for t in p.turns] == list(range(len(p.turns)))


def test_plan_errors():
  with pytest.raises(ValueError, match="positive"):
    sd.plan_corpus(0, 0)
  with pytest.raises(ValueError, match="exactly one"):
    sd.build_corpus(0, minutes=1, hours=1)


def test_synthesis_deterministic_across_workers():
  plans = sd.plan_corpus(5, 60, min_conversations=2)[:2]
  one = list(sd.synthesize_all(plans, 16000, num_workers=0, progress=False))
  two = list(sd.synthesize_all(plans, 16000, num_workers=2, progress=False))
  for c1, c2 in zip(one, two):
    assert c1.conversation_id == c2.conversation_id
    for t1, t2 in zip(c1.turns, c2.turns):
      np.testing.assert_array_equal(t1.audio, t2.audio)
      assert (t1.start_s, t1.end_s) == (t2.start_s, t2.end_s)


def test_turn_labels_and_timing():
  conv = sd.synthesize_conversation(sd.plan_conversation(2, 0), 24000)
  prev_end = 0.0
  for t in conv.turns:
    assert t.audio.dtype == np.int16 and t.sample_rate == 24000
    assert t.start_s >= prev_end and t.end_s > t.start_s
    assert abs((t.end_s - t.start_s) - t.audio.size / 24000) < 1e-3
    assert t.num_turns == len(conv.turns)
    assert t.speaker_name == voices.speaker(t.speaker_id).name
    prev_end = t.end_s
  mix = conv.mixdown()
  assert abs(mix.size / 24000 - conv.duration_s) < 0.01


def test_built_duration_tracks_target():
  plans = sd.plan_corpus(9, 240)
  convs = list(sd.synthesize_all(plans, 16000, num_workers=2,
                                 progress=False))
  total = sum(c.duration_s for c in convs)
  estimated = sum(p.estimated_seconds() for p in plans)
  assert abs(total / estimated - 1) < 0.15
  assert total >= 0.85 * 240


def _die(spec, sample_rate=16000, with_features=False):
  import os
  os._exit(3)


def test_dead_worker_raises_instead_of_hanging(monkeypatch):
  # Forked workers inherit the patch; the pool must report the lost
  # conversation rather than wait for it forever.
  monkeypatch.setattr(sd, "synthesize_conversation", _die)
  plans = sd.plan_corpus(5, 60, min_conversations=2)[:2]
  with pytest.raises(sd.SynthesisWorkerError, match=plans[0].conversation_id):
    list(sd.synthesize_all(plans, 16000, num_workers=2, progress=False,
                           start_method="fork"))


def test_default_start_method_avoids_fork_when_main_is_importable(
    monkeypatch, tmp_path):
  import sys
  import types
  script = tmp_path / "script.py"
  script.write_text("")
  monkeypatch.setitem(sys.modules, "__main__",
                      types.SimpleNamespace(__file__=str(script)))
  assert sd.default_start_method() == "spawn"
  monkeypatch.setitem(sys.modules, "__main__",
                      types.SimpleNamespace(__file__="<stdin>"))
  assert sd.default_start_method() == "fork"
