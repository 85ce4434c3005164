"""CTC forced alignment of a long transcript (tests/eval/test_eval_stats.py
holds the short cases)."""

import numpy as np

from csm_jax.eval.alignment import word_end_times


def _posteriors(frame_labels, vocab, blank=0, sharp=8.0):
  """Log-softmax posteriors whose argmax is ``frame_labels`` frame by frame."""
  logits = np.zeros((len(frame_labels), vocab))
  logits[np.arange(len(frame_labels)), frame_labels] = sharp
  return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def test_long_transcript_word_ends():
  # 90 characters: more CTC states than an int8 can count.
  alphabet = "_ abcdefghijklmnopqrstuvwxyz"
  text = " ".join(["abcdefghi"] * 9)
  ids = [alphabet.index(c) for c in text]
  frames = []
  for i in ids:
    frames += [i, i, 0]
  lp = _posteriors(frames, vocab=len(alphabet))
  ends = word_end_times(text, lp, alphabet, blank=0, seconds_per_frame=0.02)
  # Word w's last character is id-position 10*w + 8, its last frame
  # 3 * that + 1; the end time is one frame past it.
  expected = [(3 * (10 * w + 8) + 2) * 0.02 for w in range(9)]
  np.testing.assert_allclose(ends, expected)
