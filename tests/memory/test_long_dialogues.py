"""The ``long`` corpus size: 12-20 turns, personas that persist."""

import collections

import pytest

from csm_jax.data.corpora import synthetic
from csm_jax.data.synthetic import dialogues as sd
from csm_jax.data.synthetic import long_dialogues as ld


def test_long_plans_are_long_deterministic_and_apart_from_the_default():
  plans = [ld.plan_long_conversation(0, i) for i in range(30)]
  assert all(ld.MIN_TURNS <= len(p.turns) <= ld.MAX_TURNS for p in plans)
  assert len({len(p.turns) for p in plans}) > 3
  again = ld.plan_long_conversation(0, 7)
  assert again == plans[7]
  default_ids = {sd.plan_conversation(0, i).conversation_id for i in range(30)}
  assert not default_ids & {p.conversation_id for p in plans}
  for p in plans:  # nobody speaks twice in a row
    spk = [t.speaker_id for t in p.turns]
    assert all(a != b for a, b in zip(spk, spk[1:]))
  corpus = ld.plan_long_corpus(0, 600.0)
  assert sum(p.estimated_seconds() for p in corpus) >= 600.0
  with pytest.raises(ValueError):
    ld.plan_long_corpus(0, 0.0)


def test_a_speakers_persona_shows_in_its_emotions_in_every_conversation():
  counts = collections.defaultdict(collections.Counter)
  for i in range(200):
    for t in ld.plan_long_conversation(1, i).turns:
      counts[ld.persona_of(t.speaker_id)][t.emotion] += 1
  share = lambda persona, emo: counts[persona][emo] / sum(
      counts[persona].values())
  for persona, emo in (("cheerful", "happy"), ("gloomy", "sad"),
                       ("irritable", "angry"), ("nervous", "anxious"),
                       ("serene", "calm")):
    others = [share(p, emo) for p in ld.PERSONA_NAMES if p != persona]
    assert share(persona, emo) > 1.5 * max(others), (persona, emo)


def test_the_default_sizes_are_unchanged_and_long_is_its_own_size():
  configs = {c.name: c for c in synthetic.SyntheticDialogues.BUILDER_CONFIGS}
  for name, minutes in {"tiny": 1.0, "small": 10.0, "default": 60.0,
                        "large": 1200.0}.items():
    assert configs[name].minutes == minutes
    assert not configs[name].long_conversations
  assert configs["long"].long_conversations
  assert synthetic.SyntheticDialogues.DEFAULT_CONFIG_NAME == "default"
  with pytest.raises(ValueError, match="long"):
    synthetic.builder("huge")


def test_the_long_size_records_the_phoneme_timings_the_aligned_stream_reads(
    tmp_path):
  # Declared by the builder (nothing is built): every size writes what
  # eSpeak spoke and when (turns.phoneme_alignment reads it back).
  features = synthetic.builder("long", data_dir=str(tmp_path)).info.features
  for key in ("phonemes", "phoneme_starts"):
    assert key in features, key
