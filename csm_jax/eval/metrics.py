"""Scores of one system's audio on the prompt set, per prompt, then summarized.

A *row* of a report is one system saying every prompt: the ground truth,
the codec's resynthesis of it, or the model. ``score_row`` measures each
utterance with the instruments; ``summarize`` turns the per-prompt values
into figures with bootstrap intervals. Definitions (also in the report and
in docs/evaluation.md):

- ``cer`` / ``wer``: edits / reference characters (words) of the
  recognizer's transcript against the prompt text, both normalized
  (lowercase, no punctuation), summed over prompts.
- ``speaker_similarity``: cosine of the utterance's speaker embedding with
  the mean embedding of the same speaker's turns in the prompt's context.
- ``emotion_agreement``: share of utterances the emotion classifier assigns
  the prompt's intended (labelled) emotion.
- ``f0_continuity``: Pearson correlation, across prompts, of the mean log
  F0 of the speaker's last context turn and of the utterance (pGSLM's
  prompt-to-continuation measure; they report 0.315 on LibriSpeech).
- ``end_of_speech_rate`` (model only): share of generations that stopped
  on the end-of-speech frame rather than a cap.
- ``duration_ratio``: utterance seconds / ground-truth seconds (mean).
- ``ended_in_time`` (model only): share of generations that stopped on the
  end of speech with a duration ratio within ``IN_TIME`` (0.7-1.4): ended
  by themselves, neither cut short nor run on.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from csm_jax.eval import stats
from csm_jax.eval import text_metrics

METRICS = ("cer", "wer", "speaker_similarity", "emotion_agreement",
           "f0_continuity", "end_of_speech_rate", "duration_ratio",
           "ended_in_time")
IN_TIME = (0.7, 1.4)
# Measured on generations only: other rows show "-" for these.
MODEL_ONLY = ("end_of_speech_rate", "ended_in_time")
# Said under the model row of a model with the emotion tag.
EMOTION_GIVEN = ("The model is told each prompt's labelled emotion "
                 "(model.emotion_tag), as it is told its speaker.")
# Lower is better for these; the rest: higher, except duration_ratio (1).
LOWER_IS_BETTER = ("cer", "wer")


@dataclasses.dataclass
class RowScores:
  """Per-prompt measurements of one system."""

  name: str
  transcripts: list
  char_edits: np.ndarray
  char_len: np.ndarray
  word_edits: np.ndarray
  word_len: np.ndarray
  speaker_similarity: np.ndarray
  emotion_pred: np.ndarray       # class index, -1 where unknown
  emotion_target: np.ndarray     # class index, -1 where the label is unknown
  f0_reference: np.ndarray       # mean log2 F0 of the speaker's last context turn
  f0_output: np.ndarray          # mean log2 F0 of the utterance
  duration_s: np.ndarray
  truth_s: np.ndarray
  eos: np.ndarray | None         # model rows: stopped on end of speech
  embeddings: np.ndarray         # (n, D) speaker embeddings of the utterances

  def item(self, metric: str) -> np.ndarray:
    """Per-prompt values of a mean-type metric (for paired comparisons)."""
    if metric == "speaker_similarity":
      return self.speaker_similarity
    if metric == "emotion_agreement":
      ok = self.emotion_target >= 0
      return np.where(ok, (self.emotion_pred == self.emotion_target) * 1.0,
                      np.nan)
    if metric == "end_of_speech_rate":
      return (np.full(len(self.truth_s), np.nan) if self.eos is None
              else self.eos.astype(np.float64))
    if metric == "duration_ratio":
      return self.duration_s / np.maximum(self.truth_s, 1e-9)
    if metric == "ended_in_time":
      if self.eos is None:
        return np.full(len(self.truth_s), np.nan)
      r = self.item("duration_ratio")
      return (self.eos & (r >= IN_TIME[0]) & (r <= IN_TIME[1])) * 1.0
    raise KeyError(metric)


def _mean_log_f0(prosody: dict) -> float:
  f0 = np.asarray(prosody.get("f0_hz", []), np.float64)
  f0 = f0[np.isfinite(f0) & (f0 > 0)]
  return float(np.mean(np.log2(f0))) if len(f0) else float("nan")


def score_row(name: str, instruments, prompts: Sequence, audios: Sequence,
              sample_rate: int, eos: Sequence[bool] | None = None,
              emotion_names: Sequence[str] = ()) -> RowScores:
  """Measures ``audios[i]`` (saying ``prompts[i]``) with the instruments."""
  if len(audios) != len(prompts):
    raise ValueError(f"{name}: {len(audios)} utterances for {len(prompts)} "
                     "prompts")
  safe = [a if len(a) else np.zeros(sample_rate // 10, np.float32)
          for a in audios]
  hyps = instruments.transcribe(safe, sample_rate)
  hyps = [h if len(a) else "" for h, a in zip(hyps, audios)]
  refs = [p.target.text for p in prompts]
  ce, cl, we, wl = [], [], [], []
  for r, h in zip(refs, hyps):
    e, n = text_metrics.edits(r, h, unit="char")
    ce.append(e), cl.append(n)
    e, n = text_metrics.edits(r, h, unit="word")
    we.append(e), wl.append(n)
  emb = instruments.speaker_embeddings(safe, sample_rate)
  sims = []
  for i, p in enumerate(prompts):
    ref = [t.audio for t in p.same_speaker_context()]
    if not ref or not len(audios[i]):
      sims.append(np.nan)
      continue
    r = instruments.speaker_embeddings(ref, sample_rate).mean(axis=0)
    r = r / max(np.linalg.norm(r), 1e-9)
    sims.append(float(np.dot(emb[i], r)))
  names = list(instruments.emotion_names)
  probs = instruments.emotion_probs(safe, sample_rate)
  pred = np.where([len(a) > 0 for a in audios], np.argmax(probs, axis=1), -1)
  target = np.asarray([names.index(p.target.emotion)
                       if p.target.emotion in names else -1 for p in prompts])
  f0_ref, f0_out = [], []
  for p, a, hyp in zip(prompts, audios, hyps):
    ctx = p.same_speaker_context()
    # Texts are passed so that the tracker does not transcribe again (only
    # its F0 is used here).
    f0_ref.append(_mean_log_f0(instruments.prosody(
        ctx[-1].audio, sample_rate, text=ctx[-1].text)) if ctx else np.nan)
    f0_out.append(_mean_log_f0(instruments.prosody(
        a, sample_rate, text=hyp or p.target.text)) if len(a) else np.nan)
  return RowScores(
      name=name, transcripts=hyps, char_edits=np.asarray(ce, float),
      char_len=np.asarray(cl, float), word_edits=np.asarray(we, float),
      word_len=np.asarray(wl, float), speaker_similarity=np.asarray(sims),
      emotion_pred=np.asarray(pred), emotion_target=target,
      f0_reference=np.asarray(f0_ref), f0_output=np.asarray(f0_out),
      duration_s=np.asarray([len(a) / sample_rate for a in audios]),
      truth_s=np.asarray([len(p.target.audio) / sample_rate
                          for p in prompts]),
      eos=None if eos is None else np.asarray(eos, bool),
      embeddings=np.asarray(emb))


def summarize(row: RowScores, seed: int = 0) -> dict[str, stats.Estimate]:
  """Every metric of a row with its bootstrap 95% interval."""
  out = {
      "cer": stats.ratio(row.char_edits, row.char_len, seed=seed),
      "wer": stats.ratio(row.word_edits, row.word_len, seed=seed),
      "f0_continuity": stats.correlation(row.f0_reference, row.f0_output,
                                         seed=seed),
  }
  for m in ("speaker_similarity", "emotion_agreement", "end_of_speech_rate",
            "duration_ratio", "ended_in_time"):
    out[m] = stats.mean(row.item(m), seed=seed)
  return out


def compare(a: RowScores, b: RowScores, seed: int = 0) -> dict:
  """Paired differences a - b on the same prompts, with intervals."""
  out = {
      "cer": stats.paired_ratio(a.char_edits, a.char_len, b.char_edits,
                                b.char_len, seed=seed),
      "wer": stats.paired_ratio(a.word_edits, a.word_len, b.word_edits,
                                b.word_len, seed=seed),
  }
  for m in ("speaker_similarity", "emotion_agreement", "end_of_speech_rate",
            "duration_ratio", "ended_in_time"):
    out[m] = stats.paired(a.item(m), b.item(m), seed=seed)
  return out


def missed_in_time(row: RowScores, prompts: Sequence,
                   names: Sequence[str]) -> dict:
  """The generations that did not end in time, each with the emotion the
  classifier hears in it next to the prompt's label: on a corpus whose
  speaking rate follows an emotion the text does not give (the embedded
  one's eSpeak voices), a response said in another emotion is said at
  another rate, which the duration ratio counts as a miss."""
  ok = row.item("ended_in_time")
  names = list(names)
  misses = []
  for i in np.flatnonzero(ok == 0):
    heard = int(row.emotion_pred[i])
    misses.append({
        "id": prompts[i].id, "truth_s": round(float(row.truth_s[i]), 2),
        "ratio": round(float(row.duration_s[i] / row.truth_s[i]), 2),
        "ended": bool(row.eos[i]),
        "labelled": (prompts[i].target.emotion
                     if row.emotion_target[i] >= 0 else None),
        "heard": names[heard] if 0 <= heard < len(names) else None})
  # A corpus without emotion labels has nothing to compare with.
  other = [m for m in misses
           if m["labelled"] is not None and m["heard"] not in
           (None, m["labelled"])]
  heard_as_labelled = (row.emotion_pred == row.emotion_target) & (
      row.emotion_target >= 0)
  return {"n": int(np.sum(np.isfinite(ok))), "missed": len(misses),
          "labelled": sum(m["labelled"] is not None for m in misses),
          "heard_in_another_emotion": len(other),
          # Of the generations the classifier hears in the labelled
          # emotion, how many ended in time.
          "in_time_when_heard_as_labelled":
              [int(np.nansum(ok[heard_as_labelled])),
               int(np.sum(heard_as_labelled & np.isfinite(ok)))],
          "misses": misses}


def confusion(row: RowScores, n_classes: int) -> np.ndarray:
  """Counts (intended, classified) over utterances with both known."""
  m = np.zeros((n_classes, n_classes), np.int64)
  for t, p in zip(row.emotion_target, row.emotion_pred):
    if t >= 0 and p >= 0:
      m[t, p] += 1
  return m
