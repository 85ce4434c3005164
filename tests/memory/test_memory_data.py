"""Memory rows: turn layout, features, target rows, corpus and synthetic sources."""

import numpy as np
import pytest

from csm_jax.data import features as feats_lib
from csm_jax.data.batch import csm_batch_spec, validate_batch
from csm_jax.data.examples import memory_rows
from csm_jax.data.examples.dialogue import DialogueExamples, TokenCache
from csm_jax.data.examples.frames import Turn, conversation_rows
from csm_jax.data.examples.memory_dialogue import MemoryDialogueExamples
from csm_jax.data.examples.memory_synthetic import SyntheticMemorySource
from tests.memory.helpers import memory_config

N = 4


def _turn(n_text, n_frames, base=0):
  text = np.arange(1, n_text + 1, dtype=np.int32) + base
  codes = (np.arange(n_frames * N).reshape(n_frames, N) + base) % 30 + 1
  return Turn(text, codes.astype(np.int32))


def test_memory_turns_are_left_padded_oldest_first_and_cut_text_first():
  turns = [_turn(3, 5, 0), _turn(2, 20, 100), _turn(4, 2, 200)]
  f = [np.full((9,), i, np.float32) for i in range(3)]
  out = memory_rows.memory_fields(turns, [f[0], None, f[2]], [7, 8, 7], N,
                                  k=5, rows=10)
  assert out["memory_valid"].tolist() == [False, False, True, True, True]
  assert out["memory_speaker"].tolist() == [-1, -1, 7, 8, 7]
  assert out["memory_features_present"].tolist() == [False, False, True,
                                                     False, True]
  np.testing.assert_array_equal(out["memory_features"][4], f[2])
  assert not out["memory_mask"][:2].any()
  # Turn 1 (2 text rows + 20 frames + end of speech) cut to 10 rows: its
  # text first, then its first 8 frames.
  t1 = out["memory_mask"][3]
  assert t1[:2, -1].all() and not t1[:2, :-1].any()
  assert t1[2:, :-1].all()
  np.testing.assert_array_equal(out["memory_audio_tokens"][3, 2:],
                                turns[1].codes[:8])
  np.testing.assert_array_equal(out["memory_text_tokens"][3, :2],
                                turns[1].text_ids)
  # Turn 2: 4 text rows, 2 frames, the end-of-speech frame, then padding.
  t2 = out["memory_mask"][4]
  assert t2[:7].any(-1).all() and not t2[7:].any()
  assert not out["memory_audio_tokens"][4, 6].any()  # end of speech
  # Only the newest k turns are kept.
  out = memory_rows.memory_fields(turns, [None] * 3, [1, 2, 3], N, k=2,
                                  rows=10)
  assert out["memory_speaker"].tolist() == [2, 3]


def test_the_model_and_the_data_agree_on_the_vector_sizes():
  from csm_jax.config import memory as memory_config
  from csm_jax.model import memory as memory_lib
  assert memory_rows.SEMANTIC_DIM == memory_lib.SEMANTIC_DIM
  assert len(memory_rows.FEATURE_NORMALIZATION) == \
      memory_config.PROSODY_FEATURES


def test_features_are_the_fixed_normalization_of_the_corpus_fields():
  feats = dict.fromkeys(feats_lib.PROSODY_FIELDS, 0.0)
  for name, centre, _, log in memory_rows.FEATURE_NORMALIZATION:
    feats[name] = centre
  assert not np.any(memory_rows.memory_features(feats))
  feats["rms_db"] = -22.6 + 2 * 2.3
  feats["duration_s"] = 5.5 * np.exp(0.6)
  feats["f0_slope_st_per_s"] = 1e6
  got = memory_rows.memory_features(
      np.array([feats[k] for k in feats_lib.PROSODY_FIELDS]))
  names = [n for n, *_ in memory_rows.FEATURE_NORMALIZATION]
  assert got[names.index("rms_db")] == pytest.approx(2.0, rel=1e-5)
  assert got[names.index("duration_s")] == pytest.approx(1.0, rel=1e-5)
  assert got[names.index("f0_slope_st_per_s")] == memory_rows.CLIP
  with pytest.raises(ValueError, match="fields"):
    memory_rows.memory_features(np.zeros(3))


def test_target_rows_are_the_target_turns_frames_within_the_row():
  ctx, tgt = _turn(3, 4), Turn(_turn(2, 6).text_ids, _turn(2, 6).codes, True)
  ex = conversation_rows([ctx, tgt], N)
  n = len(ex["text_tokens"])  # 3 + 5 + 2 + 7 = 17
  out = memory_rows.target_fields(ex, 32, tgt, None, None, 4)
  assert out["memory_target_rows"].tolist() == \
      [False] * (n - 7) + [True] * 7 + [False] * (32 - n)
  assert not out["memory_target_features_present"]
  assert not np.any(out["memory_target_semantic"])
  cut = memory_rows.target_fields(ex, 12, tgt, np.ones(128), np.zeros(9), 4)
  assert cut["memory_target_rows"].tolist() == [False] * 10 + [True] * 2
  with pytest.raises(ValueError, match="semantic"):
    memory_rows.target_fields(ex, 12, tgt, np.ones(5), None, 4)


def _spec(c):
  return {**csm_batch_spec(c), **memory_rows.memory_batch_spec(c)}


def test_synthetic_memory_rows_fit_the_batch_spec_and_are_deterministic():
  c = memory_config()
  src = SyntheticMemorySource(c, 16, seed=3)
  items = [src[i] for i in range(16)]
  batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
  validate_batch(batch, _spec(c), 16)
  assert batch["memory_valid"].any() and not batch["memory_valid"].all()
  assert batch["memory_target_rows"].any(-1).all()
  again = SyntheticMemorySource(c, 16, seed=3)[5]
  for k, v in items[5].items():
    np.testing.assert_array_equal(v, again[k])
  # One example per row: a single segment.
  assert set(np.unique(batch["segment_ids"])) <= {0, 1}


def _records():
  rng = np.random.default_rng(0)
  recs = []
  # Conversation "b" stored before "a", turns out of order (tfds shuffles).
  for cid, idx, spk in (("b", 1, 2), ("a", 2, 0), ("a", 0, 0), ("b", 0, 3),
                        ("a", 1, 1), ("a", 3, 1)):
    pro = np.zeros(10, np.float32) if cid == "b" else \
        rng.uniform(1, 3, 10).astype(np.float32)
    recs.append({"text": f"turn {cid}{idx}", "speaker_id": spk,
                 "conversation_id": cid, "turn_index": idx, "prosody": pro,
                 "semantic": rng.normal(size=128).astype(np.float32)})
  return recs


def test_corpus_memory_rows_hold_the_turns_before_the_target():
  c = memory_config(turns=2)
  recs = _records()
  codes = TokenCache([np.full((5 + i, 8), i + 1, np.int16)
                      for i in range(len(recs))])
  encode = lambda spk, text: [1 + spk] + [16 + ord(ch) % 50 for ch in text]
  base = DialogueExamples(recs, codes, None, encode, N, c.data.seq_len,
                          context_turns=1)
  src = MemoryDialogueExamples(base, recs, 2, 12)
  assert len(src) == len(recs)
  by_target = {t[0]: i for i, t in enumerate(src.targets)}
  # a3 (position 5): memory = a1, a2 (positions 4, 1), oldest first.
  row = src[by_target[5]]
  assert row["memory_valid"].tolist() == [True, True]
  assert row["memory_speaker"].tolist() == [1, 0]
  np.testing.assert_array_equal(row["memory_text_tokens"][0, :3],
                                encode(1, "turn a1")[:3])
  assert row["memory_features_present"].all()
  assert row["memory_target_speaker"] == 1
  np.testing.assert_array_equal(row["memory_target_semantic"],
                                recs[5]["semantic"])
  # b1: one earlier turn; conversation b has no prosody features.
  row = src[by_target[0]]
  assert row["memory_valid"].tolist() == [False, True]
  assert not row["memory_features_present"].any()
  assert not row["memory_target_features_present"]
  # a0: nothing before it.
  assert not src[by_target[2]]["memory_valid"].any()
  c.model.memory.turn_rows = 12
  items = [src[i] for i in range(len(src))]
  batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
  validate_batch(batch, _spec(c), len(src))
