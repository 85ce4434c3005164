"""CTC forced alignment: when was each word of a known transcript spoken?

Given a recognizer's per-frame log-probabilities and the transcript, the
Viterbi path through CTC's lattice (labels interleaved with blanks, each
label held for one or more frames) assigns every character to frames; a
word ends at the last frame of its last character. Experiment 1 uses these
word ends to cut "the speech so far" before each next word.
"""

from __future__ import annotations

import numpy as np


class AlignmentError(ValueError):
  """The transcript cannot be aligned (empty, or longer than the frames)."""


def ctc_viterbi(log_probs: np.ndarray, labels: np.ndarray,
                blank: int) -> np.ndarray:
  """Frame index of the last frame of each label on the best CTC path.

  ``log_probs``: (T, V); ``labels``: (L,) ids (no blanks). Repeated labels
  need a blank between them, as in CTC. Returns (L,) end frames.
  """
  lp = np.asarray(log_probs, np.float64)
  t_len = lp.shape[0]
  labels = np.asarray(labels, np.int64)
  n = len(labels)
  if n == 0:
    raise AlignmentError("nothing to align")
  need = n + int(np.sum(labels[1:] == labels[:-1]))
  if t_len < need:
    raise AlignmentError(f"{n} labels need at least {need} frames, the "
                         f"audio has {t_len}")
  ext = np.full(2 * n + 1, blank, np.int64)
  ext[1::2] = labels
  s_len = len(ext)
  neg = -np.inf
  score = np.full(s_len, neg)
  score[0] = lp[0, ext[0]]
  score[1] = lp[0, ext[1]]
  back = np.zeros((t_len, s_len), np.int8)  # 0 stay, 1 from s-1, 2 from s-2
  skip_ok = np.zeros(s_len, bool)
  skip_ok[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
  for t in range(1, t_len):
    stay = score
    one = np.concatenate([[neg], score[:-1]])
    two = np.where(skip_ok, np.concatenate([[neg, neg], score[:-2]]), neg)
    cand = np.stack([stay, one, two])
    best = np.argmax(cand, axis=0)
    score = cand[best, np.arange(s_len)] + lp[t, ext]
    back[t] = best
  if not np.isfinite(max(score[-1], score[-2])):
    raise AlignmentError("no CTC path reaches the end of the transcript")
  s = s_len - 1 if score[-1] >= score[-2] else s_len - 2
  path = np.empty(t_len, np.int64)
  for t in range(t_len - 1, -1, -1):
    path[t] = s
    # int(): a Python int minus an int8 stays int8 under NumPy 2's rules,
    # which overflows on transcripts of over 63 characters.
    s -= int(back[t, s])
  ends = np.full(n, -1, np.int64)
  for t, s in enumerate(path):
    if s % 2 == 1:
      ends[s // 2] = t
  return ends


def word_end_times(text: str, log_probs: np.ndarray, alphabet: str,
                   blank: int, seconds_per_frame: float) -> list[float]:
  """End time (s) of each space-separated word of the normalized ``text``.

  ``alphabet[i]`` is the character of output id i (the blank's entry is
  ignored); characters outside it are dropped before aligning.
  """
  index = {ch: i for i, ch in enumerate(alphabet) if i != blank}
  words = text.split()
  ids, word_of = [], []
  for w, word in enumerate(words):
    if w:
      if " " in index:
        ids.append(index[" "])
        word_of.append(-1)
    for ch in word:
      if ch in index:
        ids.append(index[ch])
        word_of.append(w)
  ends = ctc_viterbi(log_probs, np.asarray(ids), blank)
  out = [0.0] * len(words)
  for e, w in zip(ends, word_of):
    if w >= 0:
      out[w] = max(out[w], (e + 1) * seconds_per_frame)
  return out
