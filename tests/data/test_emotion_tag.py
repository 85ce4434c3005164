"""The emotion tag row (``model.emotion_tag``): ids, rows, config, controls."""

import numpy as np
import pytest

from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer, emotion_tags
from csm_jax.data.synthetic.voices import EMOTION_NAMES
from csm_jax.data.tokenizer import TokenizerError

TOK = PhonemeTokenizer()


def test_emotion_ids_come_after_every_other_id_and_decode_by_name():
  assert emotion_tags() == EMOTION_NAMES + ("unknown",)
  # Appended: no phoneme, pause or speaker id moved.
  from csm_jax.data import phonemes
  last = TOK.phoneme_id(phonemes.INVENTORY[-1] + "'", final=True)
  assert TOK.first_emotion == last + 1
  assert TOK.vocab_size == TOK.first_emotion + len(emotion_tags())
  ids = [TOK.emotion_token_id(n) for n in emotion_tags()]
  assert ids == list(range(TOK.first_emotion, TOK.vocab_size))
  assert TOK.emotion_token_id(None) == TOK.emotion_token_id("unknown")
  assert TOK.decode(TOK.tag_rows(3, "sad", True)) == "[3]<sad>"
  assert TOK.tag_rows(3, "sad") == [TOK.bos_id, TOK.speaker_token_id(3)]
  with pytest.raises(TokenizerError, match="unknown emotion 'furious'.*calm"):
    TOK.emotion_token_id("furious")


class _Aligner:
  lead, ahead, emotion_tag = 2, 0, True

  def tag_rows(self, speaker, emotion=None):
    return TOK.tag_rows(speaker, emotion, True)

  def stream(self, rec, text, n):
    return np.asarray([40, 41]), np.minimum(np.arange(n) * 2 // n, 1)


def _examples(recs, dropout):
  from csm_jax.data.examples.dialogue import DialogueExamples, TokenCache
  codes = TokenCache([np.full((6, 4), 1) for _ in recs])
  pos = {"c": list(range(len(recs)))}
  return DialogueExamples(recs, codes, pos, None, 4, 64, context_turns=1,
                          aligner=_Aligner(), emotion_names=EMOTION_NAMES,
                          emotion_dropout=dropout)


def test_each_turn_ends_its_tag_rows_with_its_recorded_emotion():
  # Class indices of the corpus's ClassLabel, and a manifest's name.
  recs = [{"conversation_id": "c", "turn_index": i, "speaker_id": i % 3,
           "text": f"turn {i}", "emotion": e}
          for i, e in enumerate([2, 5, 0, b"calm", b"other"])]
  ds = _examples(recs, 0.0)
  names = ["sad", "anxious", "neutral", "calm", None]
  for i, name in enumerate(names):
    assert list(ds.ids[i]) == TOK.tag_rows(i % 3, name, True)
  # The target turn's rows: [bos] [speaker] [emotion], then its stream.
  ex = ds.example((1, [0]))
  text = ex["text_tokens"][:, 0]
  assert TOK.emotion_token_id("anxious") in text
  assert TOK.emotion_token_id("sad") in text   # the context turn's


def test_dropout_tells_a_fixed_share_of_turns_unknown():
  recs = [{"conversation_id": "c", "turn_index": i, "speaker_id": 0,
           "text": "x", "emotion": 1} for i in range(400)]
  unknown = TOK.emotion_token_id(None)
  share = np.mean([ids[-1] == unknown for ids in _examples(recs, 0.2).ids])
  assert 0.13 < share < 0.27
  again = np.mean([ids[-1] == unknown for ids in _examples(recs, 0.2).ids])
  assert share == again   # drawn once from the seed
  assert not any(ids[-1] == unknown for ids in _examples(recs, 0.0).ids)


def test_the_tag_is_an_aligned_stream_switch_recorded_only_when_on():
  from csm_jax.config import schema
  from tests.foundation.tiny import tiny_config
  # Inert on the prefix stream (as the lead and lookahead are): a default
  # switched to prefix on the command line is the prefix CSM.
  prefix = tiny_config(model__emotion_tag=True)
  schema.validate(prefix)
  assert "emotion_tag" not in schema.structural_fields(prefix)["model"]
  with pytest.raises(schema.ConfigError, match="model.emotion_tag_dropout"):
    schema.validate(tiny_config(
        model__text_stream="aligned", data__tokenizer_type="phoneme",
        model__emotion_tag=True, model__emotion_tag_dropout=1.0))
  on = tiny_config(model__text_stream="aligned", data__tokenizer_type="phoneme",
                   model__emotion_tag=True)
  off = tiny_config(model__text_stream="aligned",
                    data__tokenizer_type="phoneme")
  assert schema.structural_fields(on)["model"]["emotion_tag"] is True
  assert "emotion_tag" not in schema.structural_fields(off)["model"]
  # The dropout only changes training: a run may resume with another.
  off.model.emotion_tag_dropout = 0.5
  off_again = tiny_config(model__text_stream="aligned",
                          data__tokenizer_type="phoneme")
  assert (schema.structural_fields(off) ==
          schema.structural_fields(off_again))
