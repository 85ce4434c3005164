"""The aligned text stream's data: phoneme tokens, timings, rows, advance."""

import numpy as np
import pytest

from csm_jax.data.examples.frames import (END_OF_TEXT, NO_TARGET,
                                         ProsodyLayout, Turn,
                                         conversation_rows, pack)
from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer, PhonemizeError
from csm_jax.data.text_alignment import (AlignmentError, frame_index,
                                         token_starts, uniform_index)
from csm_jax.inference.aligned import TextFeed

TOK = PhonemeTokenizer()


def test_every_token_holds_a_frame_in_order_near_its_start():
  starts = [0.0, 0.1, 0.105, 0.3, 0.31]
  idx = frame_index(starts, 12, 0.04)
  # 0.1 s is frame 2 or 3 (rounding), 0.105 pushed one on, 0.3 -> 7 or 8.
  firsts = [int(np.flatnonzero(idx == k)[0]) for k in range(5)]
  assert firsts[0] == 0 and firsts[1] in (2, 3)
  assert firsts[2] == firsts[1] + 1 and firsts[3] in (7, 8)
  assert firsts[4] == firsts[3] + 1
  assert np.all(np.diff(idx) >= 0) and np.all(np.diff(idx) <= 1)
  assert set(idx) == set(range(5))
  # Tokens crowded at the end still each get a frame before it.
  late = frame_index([0.0, 0.47, 0.47, 0.47], 12, 0.04)
  assert list(late[-3:]) == [1, 2, 3]
  with pytest.raises(AlignmentError):
    frame_index([0.0] * 13, 12, 0.04)
  assert list(uniform_index(3, 6)) == [0, 0, 1, 1, 2, 2]


def test_token_starts_follow_what_espeak_spoke():
  from csm_jax.data.synthetic import espeak
  text = "Okay, should my boyfriend train the wooden leaflet?"
  sp = espeak.speak(text, "en-us", sample_rate=16000)
  ids = TOK.encode(text)
  dur = len(sp.audio) / sp.sample_rate
  starts = token_starts(TOK, ids, sp.phonemes, sp.phoneme_starts, dur)
  assert len(starts) == len(ids)
  assert np.all(np.diff(starts) >= 0) and starts[-1] <= dur
  # Most tokens sit exactly on one of eSpeak's phoneme events.
  events = np.asarray(sp.phoneme_starts, np.float64)
  exact = np.mean([np.min(np.abs(events - s)) < 1e-6 for s in starts])
  assert exact > 0.8, exact
  # The pause after "Okay," lies where eSpeak paused.
  comma = ids.index(TOK.pause_id(","))
  pauses = [t for s, t in zip(sp.phonemes, sp.phoneme_starts)
            if s.startswith("_")]
  assert min(abs(starts[comma] - t) for t in pauses) < 0.05


def test_phoneme_tokens_mark_word_ends_and_pauses():
  ids = TOK.encode("Go on. I see?")
  text = TOK.decode(ids)
  assert text == "g|'oU 'O2|n . 'aI s|'i: ?"
  assert TOK.encode_turn(3, "Go on.")[:2] == [TOK.bos_id,
                                              TOK.speaker_token_id(3)]
  assert max(ids) < TOK.vocab_size
  for bad in ("", "!!! ???", "\u043f\u0440\u0438\u0432\u0435\u0442",
              "\u4f60\u597d"):
    with pytest.raises(PhonemizeError, match="cannot phonemize"):
      TOK.encode(bad)


def test_text_streamed_in_pieces_gives_the_whole_texts_tokens():
  text = "Well, the engine folds the shiny shard. Could she close it?"
  rng = np.random.default_rng(0)
  for _ in range(5):
    cuts = sorted(rng.choice(np.arange(1, len(text)), 6, replace=False))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    feed = TextFeed(TOK, iter(pieces))
    known = []
    while not feed.closed:
      feed.pull(len(feed.tokens) + 1)
      # Tokens once known never change as more text arrives.
      assert feed.tokens[:len(known)] == known
      known = list(feed.tokens)
    assert feed.tokens == TOK.encode(text)


def _turn(trained=True, frames=7, lead=2):
  ids = np.asarray([TOK.phoneme_id("h", False), TOK.phoneme_id("aI", True),
                    TOK.pause_id(".")])
  index = np.asarray([0, 0, 1, 1, 1, 2, 2])[:frames]
  codes = np.arange(1, frames * 3 + 1).reshape(frames, 3)
  return Turn(np.asarray([2, 5]), codes, trained, stream=(ids, index)), ids


def test_aligned_rows_carry_each_token_at_its_frames():
  lead = 2
  turn, ids = _turn()
  r = conversation_rows([turn], 3, lead=lead, ahead=2)
  f = 7
  assert r["text_tokens"].shape == (2 + f + lead + 1, 3)
  stream = r["text_tokens"][2:]
  index = [0, 0, 1, 1, 1, 2, 2]
  np.testing.assert_array_equal(stream[:f, 0], ids[index])
  assert np.all(stream[f:] == END_OF_TEXT)
  # Each row also shows the two tokens after its own, then end of text.
  padded = list(ids) + [END_OF_TEXT] * 2
  for row, k in zip(stream[:f], index):
    assert list(row[1:]) == padded[k + 1:k + 3]
  assert np.all(r["text_tokens"][:2, 1:] == 0)   # tag rows: no lookahead
  # Audio of frame r sits lead rows after its token; then end of speech.
  np.testing.assert_array_equal(r["audio_tokens"][2 + lead:2 + lead + f],
                                turn.codes)
  assert np.all(r["audio_tokens"][-1] == 0) and r["mask"][-1, :-1].all()
  assert not r["mask"][:2 + lead, :-1].any() and r["mask"][:, -1].all()
  assert r["loss_mask"][2 + lead:].all() and not r["loss_mask"][:2 + lead].any()
  # Advancing from row to row walks the tokens in order, into end of text.
  adv = r["advance"]
  assert adv[0] == adv[1] == NO_TARGET and adv[-1] == NO_TARGET
  walk = np.concatenate([[0], np.cumsum(adv[2:-1])])
  np.testing.assert_array_equal(walk[:f], [0, 0, 1, 1, 1, 2, 2])
  assert np.all(walk[f:] == 3)
  packed = pack([r], 32)
  assert packed["text_tokens"].shape == (32, 3)
  assert np.all(packed["advance"][len(adv):] == NO_TARGET)


def test_context_turns_train_no_advance():
  turn, _ = _turn(trained=False)
  r = conversation_rows([turn], 3, lead=2)
  assert np.all(r["advance"] == NO_TARGET) and not r["loss_mask"].any()


def test_a_first_version_tokenizer_file_reads_as_it_did(tmp_path):
  import json
  path = tmp_path / "tokenizer.model"
  PhonemeTokenizer().save(str(path))
  meta = json.loads(path.read_text())
  assert meta["version"] == 2
  del meta["version"]   # as written before stress marks were kept
  path.write_text(json.dumps(meta))
  old = PhonemeTokenizer.load(str(path))
  assert old.decode(old.encode("Go on.")) == "g|oU O2|n ."
  assert old.vocab_size < TOK.vocab_size


def test_prosody_tokens_sit_on_the_rows_of_their_frames_codes():
  lead, f = 2, 7
  layout = ProsodyLayout(unvoiced=16, unknown_style=4)
  turn, _ = _turn()
  f0, energy = np.arange(f) + 3, np.arange(f) % 4
  turn.prosody, turn.style = (f0, energy), 1
  ctx, _ = _turn(trained=False)
  ctx.prosody = (np.arange(f), np.full(f, 2))
  rows = conversation_rows([ctx, turn], 3, prosody=layout, lead=lead,
                           ahead=2)
  audio_rows = rows["mask"][:, :-1].any(-1)
  # The column is present exactly where a frame is (the end of speech too).
  np.testing.assert_array_equal(rows["prosody_mask"], audio_rows)
  n = len(rows["positions"]) // 2
  for start, (tf0, ten), style in ((0, ctx.prosody, 4), (n, turn.prosody, 1)):
    at = start + 2 + lead   # frame 0: after the tag rows and the lead
    np.testing.assert_array_equal(rows["audio_tokens"][at:at + f],
                                  turn.codes)
    np.testing.assert_array_equal(rows["prosody_f0"][at:at + f], tf0)
    np.testing.assert_array_equal(rows["prosody_energy"][at:at + f], ten)
    assert rows["prosody_f0"][at + f] == layout.unvoiced   # end of speech
    # Rows before the lead show text only: no frame, no prosody.
    assert not rows["prosody_mask"][start:at].any()
    assert set(rows["prosody_style"][start:start + n]) == {style}
  # Off, the rows are exactly what they were.
  plain = conversation_rows([ctx, turn], 3, lead=lead, ahead=2)
  assert not any(k.startswith("prosody_") for k in plain)
  for k, v in plain.items():
    np.testing.assert_array_equal(rows[k], v)


class _Aligner:
  lead, ahead = 2, 2

  def tag_rows(self, speaker):
    return [2, 5 + speaker]

  def stream(self, rec, text, n):
    return np.asarray([40, 41, 42]), np.minimum(np.arange(n) * 3 // n, 2)


class _ProsodyTurns:
  bins = ProsodyLayout(unvoiced=16, unknown_style=4)
  styles = [0, 1, 2, 3]

  def tokens(self, pos, n):
    return np.full(n, 10 + pos), np.full(n, pos % 4)


def test_dialogue_examples_carry_both_streams_and_fit_the_batch_spec():
  from csm_jax.data.batch import csm_batch_spec, validate_batch
  from csm_jax.data.examples.dialogue import DialogueExamples, TokenCache
  from tests.foundation.tiny import tiny_config
  recs = [{"conversation_id": "c", "turn_index": i, "speaker_id": i % 2,
           "text": f"turn {i}"} for i in range(4)]
  codes = TokenCache([np.full((6 + i, 4), 1 + i) for i in range(4)])
  ds = DialogueExamples(recs, codes, {"c": [0, 1, 2, 3]}, None, 4, 64,
                        context_turns=1, loss_on="all_audio",
                        prosody=_ProsodyTurns(), aligner=_Aligner())
  ex = ds.example((2, [1]))
  frame = ex["mask"][:, :-1].any(-1)
  np.testing.assert_array_equal(ex["prosody_mask"], frame)
  # Each frame's F0 id is its own turn's (10 + record), on its codes' row.
  real = frame & (ex["audio_tokens"][:, 0] > 0)
  np.testing.assert_array_equal(ex["prosody_f0"][real],
                                9 + ex["audio_tokens"][real, 0])
  # Only the target's style is given.
  seg = np.flatnonzero(np.diff(frame.astype(int)) < 0)[0] + 1
  assert set(ex["prosody_style"][:seg]) == {4}
  assert set(ex["prosody_style"][seg:]) == {2}
  c = tiny_config(model__text_vocab=512, model__text_stream="aligned",
                  data__seq_len=64)
  c.model.prosody.update(enabled=True, f0_bins=16, style_classes=2,
                         intensity_bins=2, energy_bins=4)
  batch = {k: v[None] for k, v in ds[0].items()}
  validate_batch(batch, csm_batch_spec(c), 1)


def test_word_starts_lay_each_words_tokens_from_its_start():
  """A real corpus's word timings (a manifest's ``word_starts`` or the CTC
  alignment of a recording) put each word's first token on its start."""
  from csm_jax.data.phoneme_tokenizer import split_words, word_events
  from csm_jax.data.text_alignment import timed_index
  text = "Hello there, my friend."
  starts = [0.0, 0.5, None, 1.2]
  events = word_events(text, starts, 1.6)
  ids = TOK.encode(text)
  fs = 0.08
  idx = timed_index(TOK, ids, events, 26, fs)
  first_of_word, k = [], 0
  for w, p in split_words(text):
    first_of_word.append(k)
    k += len(TOK.word_tokens(w, p))
  assert k == len(ids)
  frames = [int(np.flatnonzero(idx == t)[0]) for t in first_of_word]
  # "my" has no start: halfway between "there," (0.5) and "friend." (1.2).
  assert frames == [0, round(0.5 / fs), round(0.85 / fs), round(1.2 / fs)]
  assert np.all(np.diff(idx) >= 0) and idx[-1] == len(ids) - 1
  assert word_events(text, [None] * 4, 1.6) is None
  with pytest.raises(ValueError, match="3 word starts for the 4 words"):
    word_events(text, [0.0, 0.1, 0.2], 1.6)


def test_a_manifest_turn_with_word_starts_trains_the_aligned_stream():
  from csm_jax.data.corpora.turns import word_record
  from csm_jax.data.text_alignment import Aligner
  text = "Hello there, my friend."
  rec = {"text": text.encode(), "start_s": 3.0, "end_s": 4.6,
         **word_record(text, [0.0, 0.5, None, 1.2])}
  aligner = Aligner(TOK, lead=2, frame_seconds=0.08, where="calls.jsonl")
  ids, idx = aligner.stream(rec, text, 26)
  assert list(ids) == TOK.encode(text)
  assert idx[round(0.5 / 0.08)] > idx[round(0.5 / 0.08) - 1]
  # A turn with neither phonemes nor word starts names what is missing.
  bare = {"text": text.encode(), "start_s": 0.0, "end_s": 1.6,
          **word_record("", ())}
  with pytest.raises(AlignmentError, match="calls.jsonl.*'word_starts'"):
    aligner.stream(bare, text, 26)
