"""Aligned words become turns: cut at speaker changes and long pauses.

With a tagged transcript the speaker of every word is its line's tag, and
a turn ends where the tag changes or where two aligned words are
``long_pause_s`` apart. Without tags the words are first grouped into
stretches (a sentence, or the words between pauses of ``stretch_pause_s``),
each stretch gets a speaker by clustering (``speaker_clusters``), and
neighbouring stretches of one speaker join into a turn unless a long
pause separates them.

A turn's speech runs from its first aligned word's start to its last
aligned word's end, each edge moved outward to where the level crosses
the speech threshold (``long_audio.refine_edge``), never into the
neighbouring turn's words. The cut adds ``pad_s`` of context on both sides
where the neighbours leave room (half the gap at most; none where speech
overlaps). A turn's score is the mean score of its words, an unaligned
word counting 0; turns below ``min_turn_score`` are excluded and counted.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Sequence

import numpy as np

from csm_jax.data.corpora import long_audio
from csm_jax.data.corpora import speaker_clusters
from csm_jax.data.corpora.ctc_align import Word

_SENTENCE_END = re.compile(r"[.?!]['\")\]]*$")


@dataclasses.dataclass
class CutOptions:
  long_pause_s: float = 1.5
  stretch_pause_s: float = 0.5
  min_turn_score: float = 0.35
  pad_s: float = 0.15
  edge_search_s: float = 0.25
  min_stretch_s: float = 0.3     # shorter stretches take a neighbour's voice


@dataclasses.dataclass
class CutTurn:
  speaker: str
  words: list[Word]
  speech_start: float = 0.0
  speech_end: float = 0.0
  start: float = 0.0
  end: float = 0.0
  score: float = 0.0
  kept: bool = False
  excluded: str = ""

  @property
  def text(self) -> str:
    return " ".join(w.text for w in self.words)

  @property
  def aligned(self) -> list[Word]:
    return [w for w in self.words if w.aligned]


def _split_at_pauses(groups: list[tuple[str, list[Word]]], pause: float
                     ) -> list[tuple[str, list[Word]]]:
  out = []
  for speaker, words in groups:
    cur, last = [], None
    for w in words:
      if w.aligned and last is not None and w.start - last.end >= pause:
        out.append((speaker, cur))
        cur = []
      cur.append(w)
      if w.aligned:
        last = w
    if cur:
      out.append((speaker, cur))
  return out


def tagged_groups(words: Sequence[Word], line_speakers: Sequence[str],
                  options: CutOptions) -> list[tuple[str, list[Word]]]:
  """Words grouped by their lines' speakers, split at long pauses."""
  groups: list[tuple[str, list[Word]]] = []
  for w in words:
    spk = line_speakers[w.line]
    if groups and groups[-1][0] == spk:
      groups[-1][1].append(w)
    else:
      groups.append((spk, [w]))
  return _split_at_pauses(groups, options.long_pause_s)


def stretches(words: Sequence[Word], options: CutOptions) -> list[list[Word]]:
  """Sentences, further split at pauses: the units speakers are given to.

  Unaligned words stay with the stretch before them (the first stretch
  takes any that open the transcript).
  """
  sentences, cur = [], []
  for w in words:
    cur.append(w)
    if _SENTENCE_END.search(w.text):
      sentences.append(cur)
      cur = []
  if cur:
    sentences.append(cur)
  parts = [ws for _, ws in _split_at_pauses(
      [("", s) for s in sentences], options.stretch_pause_s)]
  out: list[list[Word]] = []
  for ws in parts:
    if any(w.aligned for w in ws) or not out:
      out.append(list(ws))
    else:
      out[-1].extend(ws)
  if len(out) > 1 and not any(w.aligned for w in out[0]):
    out[1][:0] = out.pop(0)
  return out


def _span(ws: Sequence[Word]) -> tuple[float, float] | None:
  al = [w for w in ws if w.aligned]
  return (al[0].start, al[-1].end) if al else None


def clustered_groups(words: Sequence[Word], embed: Callable[[list[tuple[
    float, float]]], tuple[np.ndarray, float]], num_speakers: int | None,
                     options: CutOptions
                     ) -> tuple[list[tuple[str, list[Word]]], int]:
  """Untagged words grouped into turns by clustered speaker embeddings;
  also returns the number of speakers found. ``embed`` maps time spans to
  (vectors, the clustering slack that suits them)."""
  units = stretches(words, options)
  spans = [_span(u) for u in units]
  usable = [i for i, s in enumerate(spans)
            if s is not None and s[1] - s[0] >= options.min_stretch_s]
  labels = np.full(len(units), -1, np.int64)
  if usable:
    vecs, slack = embed([spans[i] for i in usable])
    labels[usable] = speaker_clusters.cluster(vecs, num_speakers,
                                              slack=slack)
  # A stretch too short to judge (or with no aligned word) takes the
  # voice of the nearest judged stretch in time.
  centres = np.asarray([np.mean(s) if s else np.nan for s in spans])
  for i in range(len(units)):
    if labels[i] >= 0 or not usable:
      continue
    if np.isnan(centres[i]):
      near = min(usable, key=lambda j: abs(j - i))
    else:
      near = min(usable, key=lambda j: abs(centres[j] - centres[i]))
    labels[i] = labels[near]
  labels[labels < 0] = 0
  groups: list[tuple[str, list[Word]]] = []
  for unit, lab in zip(units, labels):
    spk = f"speaker_{int(lab) + 1}"
    if groups and groups[-1][0] == spk:
      groups[-1][1].extend(unit)
    else:
      groups.append((spk, list(unit)))
  return (_split_at_pauses(groups, options.long_pause_s),
          int(labels.max()) + 1 if len(labels) else 0)


def make_turns(groups: Sequence[tuple[str, list[Word]]], scan_energy:
               np.ndarray, threshold: float, duration_s: float,
               options: CutOptions) -> list[CutTurn]:
  """Turns with boundaries, cut points, scores and the keep decision."""
  turns = [CutTurn(spk, ws) for spk, ws in groups]
  spans = [_span(t.words) for t in turns]
  for i, t in enumerate(turns):
    scored = [w for w in t.words if w.labels.size]
    t.score = float(np.mean([w.score if w.aligned else 0.0 for w in scored])
                    ) if scored else 0.0
    if spans[i] is None:
      t.excluded = "no_aligned_word"
      continue
    prev = next((spans[j][1] for j in range(i - 1, -1, -1) if spans[j]), 0.0)
    nxt = next((spans[j][0] for j in range(i + 1, len(turns)) if spans[j]),
               duration_s)
    s, e = spans[i]
    t.speech_start = long_audio.refine_edge(
        scan_energy, s, threshold, -1, options.edge_search_s, min(prev, s))
    t.speech_end = long_audio.refine_edge(
        scan_energy, e, threshold, +1, options.edge_search_s, max(nxt, e))
    if t.score < options.min_turn_score:
      t.excluded = "low_score"
  for i, t in enumerate(turns):
    if spans[i] is None:
      continue
    prev = [u.speech_end for u in turns[:i] if _span(u.words)]
    nxt = [u.speech_start for u in turns[i + 1:] if _span(u.words)]
    room_before = t.speech_start - (prev[-1] if prev else 0.0)
    room_after = (nxt[0] if nxt else duration_s) - t.speech_end
    before = 0.0 if prev and room_before <= 0 else min(
        options.pad_s, room_before / 2 if prev else room_before)
    after = 0.0 if nxt and room_after <= 0 else min(
        options.pad_s, room_after / 2 if nxt else room_after)
    t.start = max(0.0, t.speech_start - max(before, 0.0))
    t.end = min(duration_s, t.speech_end + max(after, 0.0))
    t.kept = not t.excluded
  return turns
