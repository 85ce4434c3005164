"""Bootstrap intervals, forced alignment, the n-gram baseline and
best-stretch edits, on constructed cases whose answers are known."""

import numpy as np
import pytest

from csm_jax.eval import stats
from csm_jax.eval.alignment import AlignmentError, ctc_viterbi, word_end_times
from csm_jax.eval.long_form import best_substring_edits
from csm_jax.eval.ngram import NGram


def test_bootstrap_interval_covers_a_known_mean_about_95_percent():
  rng = np.random.default_rng(0)
  covered = 0
  for trial in range(200):
    x = rng.normal(3.0, 1.0, size=40)
    e = stats.mean(x, resamples=500, seed=trial)
    assert e.low <= e.value <= e.high
    covered += e.low <= 3.0 <= e.high
  # Percentile bootstrap at n=40 is slightly narrow; 95% +- sampling noise.
  assert 0.88 <= covered / 200 <= 0.99


def test_ratio_of_sums_is_not_a_mean_of_ratios():
  # Two utterances: 1 edit in 10 chars, 9 edits in 10 chars -> 10 / 20.
  e = stats.ratio([1, 9], [10, 10])
  assert e.value == pytest.approx(0.5)
  e = stats.ratio([0, 10], [100, 10])  # corpus CER 10/110, not 0.5
  assert e.value == pytest.approx(10 / 110)


def test_paired_difference_and_correlation():
  a = np.arange(20.0)
  d = stats.paired(a + 1.0, a)
  assert d.value == pytest.approx(1.0) and d.low == pytest.approx(1.0)
  r = stats.correlation(a, 2 * a + 1)
  assert r.value == pytest.approx(1.0)
  assert np.isnan(stats.correlation([1, 1, 1, 1], [1, 2, 3, 4]).value)
  with pytest.raises(ValueError):
    stats.paired([1, 2], [1])


def _peaked(path, vocab):
  """Log-probs that put almost all mass on ``path`` (one id per frame)."""
  lp = np.full((len(path), vocab), np.log(1e-4))
  lp[np.arange(len(path)), path] = np.log(1 - 1e-4 * (vocab - 1))
  return lp


def test_ctc_viterbi_recovers_label_end_frames():
  blank = 0
  # frames: b a a b b c c c b  -> label a ends at 2, c ends at 7
  path = [0, 1, 1, 0, 0, 3, 3, 3, 0]
  ends = ctc_viterbi(_peaked(path, 4), np.array([1, 3]), blank)
  assert ends.tolist() == [2, 7]
  # A repeated label needs a blank between its two runs.
  path = [2, 2, 0, 2, 0]
  assert ctc_viterbi(_peaked(path, 4), np.array([2, 2]), blank).tolist() == [
      1, 3]
  with pytest.raises(AlignmentError):
    ctc_viterbi(_peaked([1], 4), np.array([1, 2]), blank)


def test_word_end_times_from_alignment():
  alphabet = "_ ab"  # blank 0, space 1, a 2, b 3
  path = [2, 2, 0, 1, 3, 3, 3, 0]  # "a" "b" -> a ends at frame 1, b at 6
  ends = word_end_times("a b", _peaked(path, 4), alphabet, 0, 0.04)
  assert ends == pytest.approx([0.08, 0.28])


def test_trigram_baseline_predicts_a_seen_continuation():
  lm = NGram(3).fit([["i", "am", "here"], ["you", "are", "there"],
                     ["i", "am", "there"], ["i", "am", "here"]])
  assert lm.predict(["i", "am"], ["here", "there", "you"]) == "here"
  assert lm.predict(["you", "are"], ["here", "there"]) == "there"
  total = sum(lm.prob(["i"], w) for w in ["i", "am", "here", "you", "are",
                                           "there"])
  assert total == pytest.approx(1.0, abs=1e-6)


def test_best_stretch_edits():
  ref = "the cat sat on the mat"
  assert best_substring_edits(ref, "sat on") == 0
  assert best_substring_edits(ref, "sat in") == 1
  assert best_substring_edits(ref, "") == 0
  assert best_substring_edits("abc", "xyz") == 3


def test_the_long_response_keeps_the_context_that_leaves_it_its_length():
  from csm_jax.eval import long_form

  import ml_collections

  class Gen:
    # The cache holds 40 s of rows (``Generator.cache_len``).
    max_len, cache_len, frame_seconds = 1000, 1000, 0.04
    config = ml_collections.ConfigDict({"model": {"text_stream": "prefix"}})

    def prompt_rows(self, text, speaker, context, reserve):
      return {"positions": [0] * (10 + 200 * len(context))}

  import numpy as np
  from csm_jax.eval.prompts import Turn
  turns = [Turn(0, f"t{i}", np.zeros(8, np.float32), "", i) for i in (1, 2, 3)]
  # 3 turns leave (1000 - 610) x 0.04 = 15.6 s, 2 leave 23.6 s, 1 leaves
  # 31.6 s: the newest one is kept.
  kept, fits, rows = long_form._fitting_context(Gen(), "x", 0, turns)
  assert [t.text for t in kept] == ["t3"] and rows == 210 and abs(fits - 31.6) < 1e-9
  Gen.cache_len = 500   # even no context leaves under 30 s: none is kept
  kept, fits, rows = long_form._fitting_context(Gen(), "x", 0, turns)
  assert kept == [] and rows == 10 and abs(fits - 19.6) < 1e-9
