"""The instruments' arithmetic on constructed cases with known answers:
text normalization and CER/WER, the CTC greedy decoder, EER and cosine
similarity, the log-mel front end, augmentation and length buckets."""

import numpy as np
import pytest

from csm_jax.eval import text_metrics as tm
from csm_jax.eval.instruments import augment, ctc, frontend, scoring
from csm_jax.eval.instruments.instruments import bucket


# -- text ---------------------------------------------------------------------

def test_normalize_keeps_words_and_inner_apostrophes():
  assert tm.normalize("Hello,  WORLD!  Chloe's  'quoted' well-known") == (
      "hello world chloe's quoted well known")
  assert tm.normalize(b"It\xe2\x80\x99s OK.") == "it's ok"
  assert tm.normalize("  ...  ") == ""


def test_identical_text_gives_zero_error():
  refs = ["Okay, should my boyfriend train?", "Who is the bowl so graceful?"]
  assert tm.cer(refs, refs) == 0.0
  assert tm.wer(refs, refs) == 0.0
  # Punctuation and case are not errors.
  assert tm.cer(refs, [r.lower().replace(",", "") for r in refs]) == 0.0


def test_known_cer_and_wer():
  # One deleted letter in 11 characters (the space counts): CER 1/11.
  assert tm.cer("hello world", "helo world") == pytest.approx(1 / 11)
  # One substituted word of three.
  assert tm.wer("the red fox", "the bed fox") == pytest.approx(1 / 3)
  # Corpus level: total edits over total length, not a mean of ratios.
  assert tm.wer(["a b c d", "e"], ["a b c d", "x"]) == pytest.approx(1 / 5)
  assert tm.edits("abc", "abxc", "char") == (1, 3)
  assert tm.edits("a b", "a", "word") == (1, 2)


def test_edit_counts_sum_to_the_corpus_rate():
  refs = ["one two three", "four five", "six"]
  hyps = ["one too three", "four", "six seven"]
  e, n = tm.edit_counts(refs, hyps, "word")
  assert e == [1, 1, 1] and n == [3, 2, 1]
  assert sum(e) / sum(n) == pytest.approx(tm.wer(refs, hyps))


def test_empty_reference_counts_insertions():
  assert tm.edits("", "two words", "word") == (2, 0)
  assert tm.edits("", "", "char") == (0, 0)
  with pytest.raises(ValueError, match="unit"):
    tm.edits("a", "a", unit="phone")
  with pytest.raises(ValueError, match="2 references but 1"):
    tm.cer(["a", "b"], ["a"])


# -- CTC ----------------------------------------------------------------------

def test_greedy_collapses_repeats_and_drops_blanks():
  b = ctc.BLANK
  h, e, l, o = (ctc.ALPHABET.index(c) for c in "helo")
  # "hh_e_ll_ll_oo": the blank between the two l-runs keeps both l's.
  frames = [h, h, b, e, b, l, l, b, l, o, o, b]
  assert ctc.decode_ids(ctc.greedy_ids(frames)) == "hello"
  assert ctc.greedy_ids([b, b, b]) == []
  assert ctc.greedy_ids([l, l, l]) == [l]


def test_greedy_decode_of_scores_and_length():
  text = "a cab"
  ids = ctc.encode(text)
  frames = []
  for i in ids:
    frames += [i, i, ctc.BLANK]
  scores = np.full((len(frames) + 4, ctc.VOCAB), -10.0)
  scores[np.arange(len(frames)), frames] = 0.0
  scores[len(frames):, ctc.ALPHABET.index("z")] = 0.0   # beyond the length
  assert ctc.greedy_decode(scores, length=len(frames)) == text
  assert ctc.greedy_decode(scores).endswith("z")


def test_encode_normalizes_and_drops_unknown_characters():
  assert ctc.decode_ids(ctc.encode("Hi, Bob's 3 cats!")) == "hi bob's  cats"
  assert ctc.unknown_fraction(["ab", "c1"]) == pytest.approx(1 / 4)
  assert ctc.ALPHABET[ctc.BLANK] == "_"


# -- speaker scores -------------------------------------------------------------

def test_eer_known_answers():
  same = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
  # Perfectly separated scores: EER 0, threshold between the two groups.
  rate, thr = scoring.eer([0.9, 0.8, 0.85, 0.7, 0.1, 0.2, 0.3, 0.0], same)
  assert rate == 0.0 and 0.3 < thr <= 0.7
  # Fully inverted: every decision is wrong.
  rate, _ = scoring.eer([0.1, 0.2, 0.3, 0.0, 0.9, 0.8, 0.85, 0.7], same)
  assert rate == pytest.approx(1.0)
  # One different pair above one same pair of four each: EER 1/4.
  rate, thr = scoring.eer([0.9, 0.8, 0.7, 0.4, 0.5, 0.3, 0.2, 0.1], same)
  assert rate == pytest.approx(0.25)
  assert 0.4 <= thr <= 0.5
  with pytest.raises(ValueError, match="same and different"):
    scoring.eer([0.1, 0.2], [True, True])


def test_eer_matches_brute_force_on_random_scores():
  rng = np.random.default_rng(0)
  same = rng.random(400) < 0.3
  scores = rng.normal(size=400) + 1.5 * same
  rate, thr = scoring.eer(scores, same)
  ts = np.sort(scores)
  far = np.array([(scores[~same] >= t).mean() for t in ts])
  frr = np.array([(scores[same] < t).mean() for t in ts])
  best = np.min(np.maximum(far, frr))
  assert abs(rate - best) <= 1.0 / same.sum() + 1e-9
  assert ts[0] <= thr <= ts[-1]


def test_swapped_speaker_gives_lower_similarity():
  rng = np.random.default_rng(1)
  centres = rng.normal(size=(3, 16))
  emb = np.concatenate([c + 0.3 * rng.normal(size=(5, 16)) for c in centres])
  labels = np.repeat([0, 1, 2], 5)
  sim = scoring.cosine_similarity(emb, emb)
  same = sim[0, 1:5].mean()
  swapped = sim[0, 5:10].mean()     # the same turn scored against speaker 1
  assert same > swapped + 0.3
  scores, is_same = scoring.trials(emb, labels)
  assert len(scores) == 15 * 14 // 2 and is_same.sum() == 3 * 10
  assert scoring.eer(scores, is_same)[0] == 0.0
  assert np.allclose(np.linalg.norm(scoring.l2_normalize(emb), axis=1), 1)


def test_confusion_counts():
  m = scoring.confusion([0, 0, 1, 2], [0, 1, 1, 1], 3)
  assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 1, 0]]


# -- front end, augmentation, buckets -------------------------------------------

def test_log_mel_of_a_tone_peaks_in_its_band():
  t = np.arange(frontend.SAMPLE_RATE) / frontend.SAMPLE_RATE
  x = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
  m = frontend.log_mel(x)
  assert m.shape == (frontend.num_frames(len(x)), frontend.N_MELS)
  peak = frontend.band_centers_hz()[np.argmax(m[50])]
  assert 900 < peak < 1100
  # 24 kHz input is resampled to the same frames.
  x24 = 0.5 * np.sin(2 * np.pi * 1000.0 * np.arange(24000) / 24000)
  assert frontend.features(x24, 24000).shape == m.shape
  assert np.all(frontend.log_mel(np.zeros(1600)) <= frontend.SILENCE + 1e-3)


def test_augmentation_is_deterministic_and_mild():
  rng = np.random.default_rng(0)
  x = rng.normal(-5, 2, size=(300, frontend.N_MELS)).astype(np.float32)
  a = augment.Augment()(x, np.random.default_rng(3))
  b = augment.Augment()(x, np.random.default_rng(3))
  assert np.array_equal(a, b) and a.dtype == np.float32
  assert 300 / 1.1 - 2 <= len(a) <= 300 / 0.9 + 2
  assert np.array_equal(augment.NONE(x, rng), x)
  assert len(augment.tempo(x, 2.0)) == 150
  # Gain is a constant in log power; noise only adds power.
  assert np.allclose(augment.add_noise(x, 20.0) >= x, True)
  lim = augment.band_limit(x, 2000.0)
  hi = frontend.band_centers_hz() > 4000
  lo = frontend.band_centers_hz() < 1500
  assert np.all(lim[:, hi] < x[:, hi] - 5)
  assert np.allclose(lim[:, lo], x[:, lo], atol=0.02)


def test_buckets_are_few_and_cover_the_length():
  for n in (1, 255, 256, 257, 1000, 1024, 1025, 3000, 9000):
    assert bucket(n) >= n and bucket(n) % 4 == 0
  assert len({bucket(n) for n in range(1, 4000)}) <= 10


def test_validity_summary_and_markdown():
  from csm_jax.eval.instruments import validity
  v = {"corpus": "abc", "split": "validation",
       "recognizer": {"cer": 0.05, "wer": 0.2, "n_utterances": 48},
       "speaker": {"eer": 0.02, "n_trials": 1128, "threshold": 0.5},
       "emotion": {"accuracy": 0.7, "chance": 1 / 6, "majority": 0.375,
                   "confusion": [[1]], "n": 48}}
  line = validity.summary(v)
  assert "CER 5.0%" in line and "EER 2.0%" in line and "16.7%" in line
  md = validity.markdown(v)
  assert "| recognizer | CER | 5.0% | 48 turns |" in md
  assert "1128 pairs" in md and "majority class 37.5%" in md


# -- character model decoding ------------------------------------------------------

def _frames(text, ambiguous=None):
  """Log-probs spelling ``text`` (each character then a blank); at the
  positions in ``ambiguous`` (index -> other char) two characters tie."""
  rows = []
  for i, ch in enumerate(text):
    r = np.full(ctc.VOCAB, -12.0)
    r[ctc.ALPHABET.index(ch)] = np.log(0.5 if i in (ambiguous or {}) else 0.98)
    if ambiguous and i in ambiguous:
      r[ctc.ALPHABET.index(ambiguous[i])] = np.log(0.5)
    rows.append(r)
    b = np.full(ctc.VOCAB, -12.0)
    b[ctc.BLANK] = 0.0
    rows.append(b)
  return np.asarray(rows)


def test_char_lm_is_a_distribution_and_backs_off():
  from csm_jax.eval.instruments import charlm
  lm = charlm.fit(["the cat sat", "the cat ran"], order=4)
  for hist in ("", "the c", "zzz", "qu'x"):
    p = np.exp(lm.log_probs(hist))
    assert p.shape == (len(lm.symbols),) and abs(p.sum() - 1) < 1e-9
    assert p.min() > 0   # unseen continuations keep some mass
  i = lm.symbols.index
  assert lm.log_probs("the c")[i("a")] > lm.log_probs("the c")[i("e")]


def test_beam_search_without_lm_matches_greedy_and_lm_tips_ties():
  from csm_jax.eval.instruments import charlm
  clear = _frames("the cat")
  assert charlm.beam_decode(clear, None) == ctc.greedy_decode(clear) == (
      "the cat")
  # "a" and "e" tie acoustically; the corpus spells "cat".
  tie = _frames("the cet", ambiguous={5: "a"})
  lm = charlm.fit(["the cat is here", "a cat", "the cat sat"] * 3)
  assert charlm.beam_decode(tie, lm) == "the cat"
  # A clear acoustic "e" stays: the model tips close calls only.
  assert charlm.beam_decode(_frames("the cet"), lm) == "the cet"
  # Nothing heard, nothing written.
  silence = np.tile(_frames("a")[1], (20, 1))
  assert charlm.beam_decode(silence, lm) == ""
