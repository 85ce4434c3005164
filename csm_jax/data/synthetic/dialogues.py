"""The embedded default corpus: synthetic multi-speaker dialogues.

Every conversation is planned from ``(seed, index)`` alone: its arc, topic,
2-3 speakers, 4-12 turns, who speaks each turn, each turn's emotion and text,
and the pauses between turns. Conversation ``i`` is therefore the same in
every corpus built with the same seed, whatever its size or worker count (a
small build is a prefix of a large one). Turns are spoken by eSpeak NG with
the speaker's voice and the emotion's prosody offsets (``voices``), so the
whole corpus is built offline in minutes.

The corpus size is a target duration: conversations are planned until their
estimated speech time (words / speaking rate + pauses) reaches it; the built
duration is within a few percent of the target. Synthesis (and optional
feature extraction, the slow part) runs in a ``multiprocessing`` pool.

Levels: every turn is scaled by a fixed ``OUTPUT_GAIN`` rather than loudness
normalized, so the volume differences between emotions survive.
"""

from __future__ import annotations

import collections
from concurrent import futures
import dataclasses
import itertools
import multiprocessing
import os
import sys
from typing import Iterator, Sequence

import numpy as np

from csm_jax.audio import io as audio_lib
from csm_jax.data.synthetic import espeak
from csm_jax.data.synthetic import text_gen
from csm_jax.data.synthetic import voices

OUTPUT_GAIN = 0.7      # eSpeak peaks slightly above full scale when loud
DEFAULT_SAMPLE_RATE = 24000


@dataclasses.dataclass(frozen=True)
class TurnSpec:
  conversation_id: str
  turn_index: int
  speaker_id: int
  emotion: str
  arc: str
  text: str
  pause_before_s: float   # silence between the previous turn and this one


@dataclasses.dataclass(frozen=True)
class ConversationSpec:
  conversation_id: str
  index: int
  arc: str
  topic: str
  speaker_ids: tuple[int, ...]
  turns: tuple[TurnSpec, ...]

  def estimated_seconds(self) -> float:
    """Speech time guessed from word counts and each speaker's rate."""
    total = 0.0
    for t in self.turns:
      p = voices.prosody_for(voices.speaker(t.speaker_id), t.emotion)
      n_words = len(text_gen.words(t.text))
      # Fitted on built conversations: eSpeak speaks ~6 % faster than its wpm
      # setting on this text, plus ~0.2 s of sentence-final lengthening.
      total += (n_words / (p.rate / 60.0) * 0.94 + 0.2 * t.text.count(".")
                + t.pause_before_s)
    return total


@dataclasses.dataclass
class Turn:
  """One synthesized turn with its labels; ``audio`` is int16 mono."""
  conversation_id: str
  turn_index: int
  num_turns: int
  speaker_id: int
  speaker_name: str
  emotion: str
  arc: str
  topic: str
  text: str
  start_s: float          # position of the turn in the conversation
  end_s: float
  sample_rate: int
  audio: np.ndarray
  features: dict[str, np.ndarray] | None = None
  # What eSpeak spoke (espeak.Speech): phoneme mnemonics, and phoneme and
  # word start times in seconds from the turn's first sample.
  phonemes: tuple[str, ...] = ()
  phoneme_starts: np.ndarray | None = None
  words: np.ndarray | None = None
  word_starts: np.ndarray | None = None


@dataclasses.dataclass
class Conversation:
  conversation_id: str
  index: int
  arc: str
  topic: str
  speaker_ids: tuple[int, ...]
  turns: list[Turn]

  @property
  def duration_s(self) -> float:
    return self.turns[-1].end_s if self.turns else 0.0

  def mixdown(self) -> np.ndarray:
    """The whole conversation as one int16 track (turns at their times)."""
    sr = self.turns[0].sample_rate
    out = np.zeros(int(round(self.duration_s * sr)) + 1, np.int16)
    for t in self.turns:
      s = int(round(t.start_s * sr))
      out[s: s + t.audio.size] = t.audio[: out.size - s]
    return out


def conversation_id(seed: int, index: int) -> str:
  return f"s{seed}-c{index:06d}"


def plan_conversation(seed: int, index: int) -> ConversationSpec:
  """Everything about conversation ``index`` except its audio."""
  if index < 0:
    raise ValueError(f"conversation index must be >= 0, got {index}")
  rng = np.random.default_rng([seed, index, 0x5D1A])
  cid = conversation_id(seed, index)
  arc = voices.ARC_NAMES[int(rng.integers(len(voices.ARC_NAMES)))]
  n_spk = 2 if rng.random() < 0.7 else 3
  spk = tuple(int(s) for s in rng.choice(len(voices.SPEAKERS), n_spk,
                                         replace=False))
  n_turns = int(rng.integers(4, 13))
  order = [spk[0]]
  for _ in range(n_turns - 1):
    # Nobody speaks twice in a row; with three, the next is drawn.
    others = [s for s in spk if s != order[-1]]
    order.append(others[int(rng.integers(len(others)))])
  emotions = voices.arc_emotions(arc, list(spk), order, rng)
  names = [voices.speaker(s).name.capitalize() for s in spk]
  writer = text_gen.DialogueWriter(arc, rng, names)
  # Heated exchanges have short gaps; confessions leave longer silences.
  gap_lo, gap_hi = {"heated_argument": (0.05, 0.35),
                    "emotional_confession": (0.4, 1.2)}.get(arc, (0.15, 0.7))
  turns, prev = [], None
  for i, (s, emo) in enumerate(zip(order, emotions)):
    prev = writer.turn(emo, prev)
    pause = 0.0 if i == 0 else float(np.round(rng.uniform(gap_lo, gap_hi), 3))
    turns.append(TurnSpec(cid, i, s, emo, arc, prev.text, pause))
  return ConversationSpec(cid, index, arc, writer.topic, spk, tuple(turns))


def plan_corpus(seed: int, target_seconds: float,
                min_conversations: int = 1) -> list[ConversationSpec]:
  """Conversations 0, 1, ... until their estimated duration reaches target
  (and there are at least ``min_conversations``)."""
  if target_seconds <= 0:
    raise ValueError(f"target duration must be positive, got "
                     f"{target_seconds} s")
  plans, total = [], 0.0
  while total < target_seconds or len(plans) < min_conversations:
    plans.append(plan_conversation(seed, len(plans)))
    total += plans[-1].estimated_seconds()
  return plans


def synthesize_conversation(spec: ConversationSpec,
                            sample_rate: int = DEFAULT_SAMPLE_RATE,
                            with_features: bool = False) -> Conversation:
  """Speaks every turn of ``spec``; validates each turn's audio."""
  turns, clock = [], 0.0
  for t in spec.turns:
    spk = voices.speaker(t.speaker_id)
    speech = espeak.speak(t.text, spk.voice,
                          voices.prosody_for(spk, t.emotion), sample_rate)
    x = speech.audio * OUTPUT_GAIN
    where = f"{t.conversation_id}/turn{t.turn_index}"
    audio_lib.check_audio(x, sample_rate, path=where)
    pcm = audio_lib.to_int16(x)
    start = clock + t.pause_before_s
    end = start + pcm.size / sample_rate
    clock = end
    feats = None
    if with_features:
      from csm_jax.data import features  # librosa only when asked for
      feats = features.turn_features(x, sample_rate, t.text)
    turns.append(Turn(t.conversation_id, t.turn_index, len(spec.turns),
                      t.speaker_id, spk.name, t.emotion, t.arc, spec.topic,
                      t.text, round(start, 4), round(end, 4), sample_rate,
                      pcm, feats, tuple(speech.phonemes),
                      speech.phoneme_starts, speech.words,
                      speech.word_starts))
  return Conversation(spec.conversation_id, spec.index, spec.arc, spec.topic,
                      spec.speaker_ids, turns)


def _worker(args) -> Conversation:
  spec, sample_rate, with_features = args
  return synthesize_conversation(spec, sample_rate, with_features)


class SynthesisWorkerError(RuntimeError):
  """A pool worker died (killed or crashed) while building a conversation."""


def default_start_method() -> str:
  """"spawn", unless the caller's ``__main__`` cannot be re-imported.

  Forking a process that runs JAX (or any threaded runtime) copies locks
  held by threads that do not exist in the child, and numba-compiled code
  (librosa's pyin) has crashed in such children; spawned workers start
  clean. Spawn re-runs the parent's main script, so a parent read from
  stdin (``__file__`` "<stdin>", not a file) forks instead.
  """
  methods = multiprocessing.get_all_start_methods()
  main_file = getattr(sys.modules.get("__main__"), "__file__", None)
  if (main_file is not None and not os.path.isfile(main_file)
      and "fork" in methods):
    return "fork"
  return "spawn"


def synthesize_all(plans: Sequence[ConversationSpec],
                   sample_rate: int = DEFAULT_SAMPLE_RATE,
                   with_features: bool = False,
                   num_workers: int | None = None,
                   progress: bool = True,
                   start_method: str | None = None) -> Iterator[Conversation]:
  """Yields the conversations of ``plans`` in order, built in a pool.

  At most ``2 * num_workers`` conversations are in flight, so memory stays
  bounded and the output order is independent of worker timing.
  ``num_workers`` 0 runs in this process; 1 or more run in spawned worker
  processes, which is what a caller that runs JAX wants (eSpeak's isolation
  forks, and forking a process with JAX's threads can deadlock). The
  default is one worker per core, at least one. A worker that dies raises
  ``SynthesisWorkerError`` naming the conversation (a plain
  ``multiprocessing.Pool`` would wait forever for the lost task).
  """
  if num_workers is None:
    num_workers = max(1, min(len(plans), os.cpu_count() or 1))
  jobs = [(p, sample_rate, with_features) for p in plans]
  bar = None
  if progress:
    from tqdm import tqdm
    bar = tqdm(total=len(jobs), unit="conv", desc="synthetic dialogues")
  try:
    if num_workers <= 0:
      for conv in map(_worker, jobs):
        if bar:
          bar.update(1)
        yield conv
      return
    ctx = multiprocessing.get_context(start_method or default_start_method())
    with futures.ProcessPoolExecutor(num_workers, mp_context=ctx) as pool:
      pending: collections.deque = collections.deque()
      it = iter(jobs)
      for job in itertools.islice(it, 2 * num_workers):
        pending.append((job[0].conversation_id, pool.submit(_worker, job)))
      while pending:
        conv_id, fut = pending.popleft()
        try:
          conv = fut.result()
        except futures.process.BrokenProcessPool as e:
          raise SynthesisWorkerError(
              f"a synthesis worker died while building {conv_id} (killed, "
              f"out of memory or crashed); rerun with num_workers=1 to see "
              f"the error in-process") from e
        job = next(it, None)
        if job is not None:
          pending.append((job[0].conversation_id, pool.submit(_worker, job)))
        if bar:
          bar.update(1)
        yield conv
  finally:
    if bar:
      bar.close()


def build_corpus(seed: int = 0, *, minutes: float | None = None,
                 hours: float | None = None,
                 sample_rate: int = DEFAULT_SAMPLE_RATE,
                 with_features: bool = False, num_workers: int | None = None,
                 progress: bool = True) -> list[Conversation]:
  """Builds a corpus of about ``minutes`` (or ``hours``) of speech."""
  if (minutes is None) == (hours is None):
    raise ValueError("give exactly one of minutes= or hours=")
  seconds = 60.0 * minutes if minutes is not None else 3600.0 * hours
  plans = plan_corpus(seed, seconds)
  return list(synthesize_all(plans, sample_rate, with_features, num_workers,
                             progress))


def corpus_seconds(convs: Sequence[Conversation]) -> float:
  """Total speech time (sum of turn lengths, pauses excluded)."""
  return sum(t.audio.size / t.sample_rate for c in convs for t in c.turns)
