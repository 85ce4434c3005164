"""Transcript grammar: determinism, vocabulary size, sentence variety, and
replies that stay on the previous turn's subject."""

import re

import numpy as np

from csm_jax.data.synthetic import lexicon
from csm_jax.data.synthetic import text_gen
from csm_jax.data.synthetic import voices

ARCS = voices.ARC_NAMES


def _corpus(n_conv=300, turns=8):
  return [text_gen.sample_dialogue(s, ARCS[s % 4], ["neutral"] * turns)
          for s in range(n_conv)]


def test_deterministic_from_seed():
  a = text_gen.sample_dialogue(7, "heated_argument", ["angry"] * 5)
  b = text_gen.sample_dialogue(7, "heated_argument", ["angry"] * 5)
  c = text_gen.sample_dialogue(8, "heated_argument", ["angry"] * 5)
  assert a == b and a != c


def test_vocabulary_is_large():
  texts = [t for conv in _corpus() for t in conv]
  assert text_gen.distinct_words(texts) >= 2500


def test_sentence_variety():
  texts = [t for conv in _corpus(100) for t in conv]
  joined = " ".join(texts)
  assert sum(t.endswith("?") for t in texts) > 0.1 * len(texts)
  assert joined.count("!") > 0.05 * len(texts)
  assert any(b in joined for b in ("Mm, right.", "Uh huh.", "Yeah, totally."))
  for marker in (" because ", " although ", "If ", " hundred ", " and ",
                 "I think", "I guess"):
    assert marker in joined, marker
  # No fixed template dominates: the most common first three words open
  # under 5 % of turns.
  starts = [" ".join(t.split()[:3]) for t in texts]
  _, counts = np.unique(starts, return_counts=True)
  assert counts.max() < 0.05 * len(texts)


_FUNCTION_WORDS = set("""that this they them what when have will would could
should with from your their there here were been about just like into than
then because although really very some those these it's don't i'm you're
can't""".split())


def _content(text):
  return {w for w in text_gen.words(text)
          if len(w) > 3 and w not in _FUNCTION_WORDS}


def test_replies_relate_to_previous_turn():
  convs = _corpus(200)
  linked = np.mean([bool(_content(a) & _content(b))
                    for c in convs for a, b in zip(c, c[1:])])
  # Baseline: the same turns paired with a turn of another conversation.
  rng = np.random.default_rng(0)
  shuffled = np.mean([
      bool(_content(c[i]) & _content(convs[rng.integers(len(convs))][0]))
      for c in convs for i in range(1, len(c))])
  assert linked > 0.4 and linked > 3 * shuffled, (linked, shuffled)


def test_arcs_use_their_topic_lexicon():
  for arc in ARCS:
    rng = np.random.default_rng(1)
    w = text_gen.DialogueWriter(arc, rng)
    topic_words = set(sum(map(list, lexicon.TOPICS[arc][w.topic]), []))
    prev, hits = None, 0
    for _ in range(10):
      prev = w.turn("neutral", prev)
      hits += bool(set(text_gen.words(prev.text)) & topic_words)
    assert hits >= 5, arc


def test_inflection_and_numbers():
  assert [lexicon.past(v) for v in ("stop", "carry", "bake", "go")] == [
      "stopped", "carried", "baked", "went"]
  assert lexicon.plural("box") == "boxes" and lexicon.plural("city") == "cities"
  assert lexicon.gerund("make") == "making"
  assert lexicon.number_words(342) == "three hundred and forty two"
  assert lexicon.year_words(1998) == "nineteen ninety eight"


def test_speaker_names_keep_capitals_after_openers():
  texts = [t for s in range(200)
           for t in text_gen.sample_dialogue(s, "friendly_chat",
                                             ["neutral"] * 8,
                                             ["Dougal", "Esme"])]
  assert any("Dougal" in t or "Esme" in t for t in texts)
  assert not any(re.search(r"\b(dougal|esme)\b", t) for t in texts)
  assert all(t[0].isupper() for t in texts)
