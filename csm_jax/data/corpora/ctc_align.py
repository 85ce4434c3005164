"""Forced alignment of a long transcript to a recording's CTC frames.

The acoustic model is anything that implements ``Aligner``: per-frame
log-probabilities over an alphabet with a blank. The project's corpus
recognizer is wired in from the evaluation layer
(``csm_jax.eval.recording_aligner``); this module only needs its numbers.

A recording is aligned segment by segment (segments end in pauses, see
``long_audio.alignment_segments``), keeping a pointer to the next
transcript word. Each segment is aligned to a window of the words from the
pointer on by a CTC Viterbi pass whose path may *start* at any word (so
words the audio never says are skipped, at a small cost per skipped
symbol) and *end* after any word (the rest waits for the next segment);
frames the transcript does not cover stay on the blank. A word's score is
the geometric mean, over the frames its symbols and those of its
neighbours (``context_words`` on each side) occupy, of the path's
probability relative to the frame's most probable symbol (1: the model
agrees everywhere). Words scoring at least ``min_word_score`` are aligned
and move the pointer past them; a segment that aligns nothing doubles the
next segment's window, so the alignment catches up after a stretch of
transcript that the audio lacks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, Sequence

import numpy as np


class Aligner(Protocol):
  """A CTC acoustic model, as alignment uses it.

  ``log_probs`` maps mono float32 clips at ``sample_rate`` to
  (frames, len(alphabet)) log-probabilities; frame t is centred at
  ``t * seconds_per_frame``. ``alphabet[k]`` is the character of column k
  (column ``blank`` is the CTC blank); ``normalize`` turns transcript text
  into the characters the model was trained on. An aligner may also
  offer ``speaker_embeddings(clips) -> (n, dim)`` for speaker clustering.
  """

  alphabet: str
  blank: int
  sample_rate: int
  seconds_per_frame: float

  def normalize(self, text: str) -> str:
    ...

  def log_probs(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    ...


@dataclasses.dataclass
class Word:
  """One transcript word (as written) and where it was found."""
  index: int
  text: str
  line: int                    # transcript line it came from
  labels: np.ndarray           # the model's symbol ids; may be empty
  start: float = math.nan      # seconds
  end: float = math.nan
  score: float = 0.0
  aligned: bool = False


def words_of(lines: Sequence[str], aligner: Aligner) -> list[Word]:
  """The words of transcript lines with the aligner's symbols of each.

  A word whose characters are all outside the alphabet (``2024``, ``&``)
  has no symbols: it cannot be aligned and is reported as unaligned.
  """
  index = {ch: i for i, ch in enumerate(aligner.alphabet)
           if i != aligner.blank}
  out = []
  for li, text in enumerate(lines):
    for token in text.split():
      ids = [index[c] for c in aligner.normalize(token) if c in index]
      out.append(Word(len(out), token, li, np.asarray(ids, np.int64)))
  return out


@dataclasses.dataclass
class _Lattice:
  """The CTC states of a window of words."""
  ext: np.ndarray              # symbol of every state (blanks interleaved)
  word: np.ndarray             # word index of every state's label, -1 else
  start_ok: np.ndarray
  end_ok: np.ndarray
  skip_ok: np.ndarray
  penalty: np.ndarray          # cost of starting at each state


def _lattice(words: Sequence[Word], blank: int, space: int | None,
             skip_penalty: float) -> _Lattice:
  labels, owner, first, last = [], [], [], []
  for w in words:
    if not w.labels.size:
      continue
    if labels and space is not None:
      labels.append(space)
      owner.append(-1)
      first.append(False)
      last.append(False)
    n = w.labels.size
    labels += w.labels.tolist()
    owner += [w.index] * n
    first += [True] + [False] * (n - 1)
    last += [False] * (n - 1) + [True]
  n = len(labels)
  ext = np.full(2 * n + 1, blank, np.int64)
  ext[1::2] = labels
  word = np.full(2 * n + 1, -1, np.int64)
  word[1::2] = owner
  # Blank k sits before label k: between words when label k-1 and label k
  # do not belong to the same word.
  prev_owner = np.concatenate([[-2], owner])
  next_owner = np.concatenate([owner, [-3]])
  between = np.zeros(2 * n + 1, bool)
  between[0::2] = (prev_owner != next_owner) | (prev_owner == -1) | (
      next_owner == -1)
  between[1::2] = np.asarray(owner) == -1       # spaces
  start_ok = between.copy()
  start_ok[1::2] |= np.asarray(first, bool)
  end_ok = between.copy()
  end_ok[1::2] |= np.asarray(last, bool)
  skip_ok = np.zeros(2 * n + 1, bool)
  skip_ok[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
  penalty = skip_penalty * (np.arange(2 * n + 1) // 2)
  return _Lattice(ext, word, start_ok, end_ok, skip_ok, penalty)


def viterbi(log_probs: np.ndarray, lat: _Lattice) -> np.ndarray:
  """The best path's state at every frame (free start and end, see doc)."""
  lp = np.asarray(log_probs, np.float64)
  t_len, s_len = lp.shape[0], lat.ext.size
  neg = -np.inf
  score = np.where(lat.start_ok, lp[0, lat.ext] - lat.penalty, neg)
  back = np.zeros((t_len, s_len), np.int8)   # 0 stay, 1 from s-1, 2 from s-2
  pad1, pad2 = np.full(1, neg), np.full(2, neg)
  for t in range(1, t_len):
    one = np.concatenate([pad1, score[:-1]])
    two = np.where(lat.skip_ok, np.concatenate([pad2, score[:-2]]), neg)
    best = np.where(one > score, 1, 0)
    val = np.maximum(score, one)
    better = two > val
    best[better] = 2
    val = np.where(better, two, val)
    score = val + lp[t, lat.ext]
    back[t] = best
  final = np.where(lat.end_ok, score, neg)
  s = int(np.argmax(final))
  path = np.empty(t_len, np.int64)
  for t in range(t_len - 1, -1, -1):
    path[t] = s
    s -= int(back[t, s])
  return path


def _place_words(log_probs: np.ndarray, lat: _Lattice, path: np.ndarray,
                 words: dict[int, Word], offset: int, spf: float,
                 context: int) -> list[Word]:
  """Times and scores of the words on ``path`` (not yet accepted).

  A word's score pools its symbols' frames with those of ``context``
  words on each side along the path: one short word can fit noise by
  chance, a run of words cannot.
  """
  lp = np.asarray(log_probs, np.float32)
  t_idx = np.arange(path.size)
  ratio = lp[t_idx, lat.ext[path]] - lp.max(axis=1)
  owner = lat.word[path]
  on_label = (path % 2 == 1) & (owner >= 0)
  placed, sums, counts = [], [], []
  for wi in np.unique(owner[on_label]):
    frames = t_idx[on_label & (owner == wi)]
    w = words[int(wi)]
    w.start = (offset + frames[0] - 0.5) * spf
    w.end = (offset + frames[-1] + 0.5) * spf
    placed.append(w)
    sums.append(float(ratio[frames].sum()))
    counts.append(frames.size)
  sums_c = np.concatenate([[0.0], np.cumsum(sums)])
  counts_c = np.concatenate([[0], np.cumsum(counts)])
  for i, w in enumerate(placed):
    lo, hi = max(0, i - context), min(len(placed), i + context + 1)
    w.score = float(np.exp((sums_c[hi] - sums_c[lo])
                           / (counts_c[hi] - counts_c[lo])))
  return placed


@dataclasses.dataclass
class AlignOptions:
  min_word_score: float = 0.2
  context_words: int = 2       # on each side, pooled into a word's score
  skip_penalty: float = 0.1    # nats per symbol skipped at a segment start
  symbols_per_s: float = 30.0  # window size: faster than any speech
  window_pad: int = 120        # symbols added to every window


def align(log_probs: np.ndarray, seconds_per_frame: float,
          segments: Sequence[tuple[float, float]], words: list[Word],
          aligner: Aligner, options: AlignOptions = AlignOptions()
          ) -> list[Word]:
  """Aligns ``words`` to the frames of a recording (see module doc).

  Fills ``start``/``end``/``score`` of every word the path placed and
  sets ``aligned`` on those scoring at least ``min_word_score``; returns
  ``words``.
  """
  spf = float(seconds_per_frame)
  space = aligner.alphabet.index(" ") if " " in aligner.alphabet else None
  by_index = {w.index: w for w in words}
  p, widen = 0, 1
  for seg_start, seg_end in segments:
    while p < len(words) and not words[p].labels.size:
      p += 1
    if p >= len(words):
      break
    f0 = max(0, int(round(seg_start / spf)))
    f1 = min(len(log_probs), int(round(seg_end / spf)))
    if f1 - f0 < 2:
      continue
    budget = widen * (options.symbols_per_s * (f1 - f0) * spf
                      + options.window_pad)
    q, used = p, 0
    while q < len(words) and used < budget:
      used += words[q].labels.size + 1
      q += 1
    lat = _lattice(words[p:q], aligner.blank, space, options.skip_penalty)
    if lat.ext.size < 3:
      continue
    path = viterbi(log_probs[f0:f1], lat)
    placed = _place_words(log_probs[f0:f1], lat, path, by_index, f0, spf,
                          options.context_words)
    good = [w for w in placed if w.score >= options.min_word_score]
    for w in good:
      w.aligned = True
    if good:
      p, widen = max(w.index for w in good) + 1, 1
    else:
      widen = min(2 * widen, 16)
  return words


def unaligned_runs(words: Sequence[Word]) -> list[dict]:
  """Consecutive unaligned words, as report entries."""
  runs, cur = [], []
  for w in list(words) + [None]:
    if w is not None and not w.aligned:
      cur.append(w)
      continue
    if cur:
      runs.append({"first_word": cur[0].index, "last_word": cur[-1].index,
                   "line": cur[0].line + 1,
                   "text": " ".join(x.text for x in cur)})
      cur = []
  return runs
