"""CSM examples from turns: token cache, 5-turn context, target loss, packing."""

import numpy as np
import pytest

from csm_jax.data.examples.dialogue import DialogueExamples, TokenCache

HOP = 100


def _records():
  recs = []
  for conv in range(3):
    for turn in range(7):
      n = 300 + 100 * ((conv + turn) % 4)
      recs.append({"conversation_id": f"c{conv}", "turn_index": turn,
                   "speaker_id": turn % 2, "text": f"turn {turn} of {conv}",
                   "audio": (np.ones(n) * 1000).astype(np.int16),
                   "sample_rate": 16000})
  return recs


def _encode(audio):
  frames = -(-len(audio) // HOP)
  return (np.arange(frames)[:, None] % 7 + 1) * np.ones((1, 4), int)


def _positions(recs):
  pos = {}
  for i, r in enumerate(recs):
    pos.setdefault(r["conversation_id"], []).append(i)
  return pos


def _tok(speaker, text):
  return [4 + speaker] + [10 + len(w) for w in text.split()]


def test_token_cache_round_trips_and_is_reused(tmp_path):
  recs = _records()
  path = str(tmp_path / "codes" / "abc" / "train.npz")
  a = TokenCache.load_or_build(recs, _encode, path, 16000)
  calls = []
  b = TokenCache.load_or_build(recs, lambda x: calls.append(1), path, 16000)
  assert not calls  # served from disk
  for x, y in zip(a.codes, b.codes):
    np.testing.assert_array_equal(x, y)
  # Records at another rate are resampled to the codec's before encoding.
  c24 = TokenCache.load_or_build(recs, _encode, str(tmp_path / "o.npz"), 24000)
  assert len(c24.codes[0]) == -(-len(recs[0]["audio"]) * 3 // 2 // HOP)


def test_examples_hold_context_target_loss_and_pack(tmp_path):
  recs = _records()
  cache = TokenCache.load_or_build(recs, _encode, str(tmp_path / "c.npz"), 16000)
  ds = DialogueExamples(recs, cache, _positions(recs), _tok, n_codebooks=3,
                        seq_len=64, context_turns=5)
  # The last turn of a conversation sees at most 5 previous turns.
  ex = ds.example((6, [1, 2, 3, 4, 5]))
  seg_rows = len(ex["positions"])
  assert seg_rows <= 64
  # Only the target's audio (and its end frame) is trained.
  target_frames = len(cache.codes[6]) + 1
  assert ex["loss_mask"].sum() == target_frames
  assert ex["loss_mask"][-target_frames:].all()
  item = ds[0]
  assert item["audio_tokens"].shape == (64, 3)
  assert item["segment_ids"].max() >= 1
  assert len(ds) < len(recs)  # several examples share a row
  all_audio = DialogueExamples(recs, cache, _positions(recs), _tok, 3, 64,
                               loss_on="all_audio")
  ex2 = all_audio.example((6, [4, 5]))
  assert ex2["loss_mask"].sum() > target_frames


def _char_tok(speaker, text):
  # Many more ids than len(text) // 3: the shape of a small-vocabulary
  # tokenizer, which an estimate of rows from characters undercounts.
  return [4 + speaker] + [16 + ord(ch) % 64 for ch in text] + [3]


def test_packing_never_cuts_a_target_or_its_end_frame(tmp_path):
  recs = _records()
  cache = TokenCache.load_or_build(recs, _encode, str(tmp_path / "c.npz"),
                                   16000)
  ds = DialogueExamples(recs, cache, _positions(recs), _char_tok,
                        n_codebooks=3, seq_len=64, context_turns=5)
  for i in range(len(ds)):
    item = ds[i]
    want = sum(len(cache.codes[pos]) + 1 for pos, _ in ds.plan[i])
    assert item["loss_mask"].sum() == want, (i, ds.plan[i])
    # Every packed example ends on its all-zero end-of-speech frame.
    seg = item["segment_ids"]
    for s in range(1, seg.max() + 1):
      last = np.flatnonzero(seg == s)[-1]
      assert not item["audio_tokens"][last].any()
      assert item["mask"][last, :-1].all()
  # The plan's row counts are the examples' real lengths.
  for target in ds.targets:
    assert ds.rows(target) == len(ds.example(target)["positions"])


def test_the_curriculum_reads_short_targets_first_then_everything(tmp_path):
  """``data.curriculum_steps``: the first batches hold only targets of at
  most the curriculum's frames, then the whole stream follows; a restored
  iterator continues where it was, in either part."""
  from csm_jax.data.examples import loader
  recs = _records()
  codes = TokenCache([_encode(r["audio"]) for r in recs])
  ds = DialogueExamples(recs, codes, _positions(recs), _tok, 4, 48,
                        context_turns=1)
  short = ds.shorter(4)   # targets of 300-400 samples: 3-4 frames
  assert short.plan and all(len(codes.codes[p]) <= 4
                            for pack in short.plan for p, _ in pack)
  assert sum(map(len, short.plan)) < sum(map(len, ds.plan))
  with pytest.raises(ValueError, match="curriculum_max_seconds"):
    ds.shorter(2)

  def target_frames(batch):
    # Loss rows per packed example: its target's frames and end frame.
    return np.asarray([loss[seg == k].sum()
                       for seg, loss in zip(batch["segment_ids"],
                                            batch["loss_mask"])
                       for k in np.unique(seg[seg > 0])])

  first = loader.train_dataset(ds, 2, seed=3, first=(short, 3))
  it = iter(first)
  head = [next(it) for _ in range(3)]
  rest = [next(it) for _ in range(12)]
  for b in head:   # short targets only: at most 4 frames and the end
    assert target_frames(b).max() <= 5
  assert max(target_frames(b).max() for b in rest) > \
      max(target_frames(b).max() for b in head)
  # Restoring the iterator's state continues the same stream.
  again = iter(loader.train_dataset(ds, 2, seed=3, first=(short, 3)))
  for _ in range(2):
    next(again)
  state = again.get_state()
  resumed = iter(loader.train_dataset(ds, 2, seed=3, first=(short, 3)))
  resumed.set_state(state)
  for want in head[2:] + rest[:3]:
    got = next(resumed)
    np.testing.assert_array_equal(got["audio_tokens"], want["audio_tokens"])


def test_the_curriculum_is_refused_where_it_cannot_order_turns():
  from configs import debug  # pylint: disable=import-outside-toplevel
  from csm_jax.config import schema
  schema.validate(debug.get_config("data.curriculum_steps=500"))
  for bad, field in (("model.memory.enabled=True", "data.curriculum_steps"),
                     ("data.curriculum_max_seconds=0.0",
                      "data.curriculum_max_seconds")):
    c = debug.get_config("data.curriculum_steps=500," + bad)
    with pytest.raises(schema.ConfigError, match=field):
      schema.validate(c)
