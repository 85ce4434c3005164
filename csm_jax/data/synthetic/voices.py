"""Speakers, emotions and conversation arcs of the synthetic dialogue corpus.

A speaker is an eSpeak NG accent + voice variant plus its own base pitch,
pitch range and speaking rate. eSpeak variants alone are not reliably
distinct (some pairs are near-identical to a speaker encoder), so every
pair of speakers differs in at least two of: voice variant, base pitch (>= 8),
pitch range (>= 10), rate (>= 15 wpm), and most also in accent. The test
suite checks that a classifier on MFCC + F0 statistics tells them apart
across emotions. (gina uses "steph": the "f5" variant sat too close to
chloe.)

An emotion is a prosody offset applied on top of a speaker: pitch level and
range in eSpeak units, rate as a factor, volume in eSpeak units. The offsets
follow the usual acoustic correlates (happy/angry: higher, wider, faster,
louder; sad: lower, narrower, slower, quieter; calm: slightly lower, narrower
and slower) and are measured in the tests.

An arc scripts how emotions move across a conversation: it is a list of
phases; turn ``i`` of ``n`` falls in phase ``i * len(phases) // n`` and each
phase gives an emotion distribution for the conversation's lead speaker and
one for the others.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csm_jax.data.synthetic.espeak import Prosody


@dataclasses.dataclass(frozen=True)
class Speaker:
  id: int
  name: str
  voice: str          # eSpeak voice name, "<accent>+<variant>"
  pitch: int
  range: int
  rate: int
  volume: int = 100


@dataclasses.dataclass(frozen=True)
class Emotion:
  name: str
  pitch: int = 0
  range: int = 0
  rate: float = 1.0
  volume: int = 0
  wordgap: int = 0


SPEAKERS: tuple[Speaker, ...] = (
    Speaker(0, "ava", "en-us+f3", pitch=62, range=55, rate=170),
    Speaker(1, "ben", "en-us+m3", pitch=36, range=45, rate=160),
    Speaker(2, "chloe", "en-gb-x-rp+f2", pitch=74, range=65, rate=185),
    Speaker(3, "dougal", "en-gb-scotland+m1", pitch=28, range=35, rate=150),
    Speaker(4, "esme", "en-029+f4", pitch=52, range=75, rate=160),
    Speaker(5, "felix", "en+m7", pitch=48, range=30, rate=195),
    Speaker(6, "gina", "en-us-nyc+steph", pitch=84, range=40, rate=175),
    Speaker(7, "hal", "en-gb-x-gbclan+m2", pitch=18, range=60, rate=140),
    Speaker(8, "iris", "en-gb-x-gbcwmd+f1", pitch=44, range=50, rate=205),
    Speaker(9, "jon", "en-us+m6", pitch=58, range=22, rate=145),
)

EMOTIONS: tuple[Emotion, ...] = (
    Emotion("neutral"),
    Emotion("happy", pitch=12, range=22, rate=1.12, volume=15),
    Emotion("sad", pitch=-12, range=-25, rate=0.78, volume=-25, wordgap=3),
    Emotion("angry", pitch=6, range=28, rate=1.18, volume=35),
    Emotion("calm", pitch=-6, range=-15, rate=0.88, volume=-10, wordgap=1),
    Emotion("anxious", pitch=10, range=-12, rate=1.25, volume=0),
)
EMOTION_NAMES = tuple(e.name for e in EMOTIONS)
_EMOTION_BY_NAME = {e.name: e for e in EMOTIONS}


def emotion(name: str) -> Emotion:
  try:
    return _EMOTION_BY_NAME[name]
  except KeyError:
    raise ValueError(f"unknown emotion {name!r}; known: {EMOTION_NAMES}") \
        from None


def speaker(speaker_id: int) -> Speaker:
  if not 0 <= speaker_id < len(SPEAKERS):
    raise ValueError(f"speaker id {speaker_id} out of range "
                     f"0..{len(SPEAKERS) - 1}")
  return SPEAKERS[speaker_id]


def prosody_for(spk: Speaker, emo: Emotion | str) -> Prosody:
  """The eSpeak parameters for ``spk`` speaking with emotion ``emo``."""
  if isinstance(emo, str):
    emo = emotion(emo)
  return Prosody(rate=int(round(spk.rate * emo.rate)),
                 volume=spk.volume + emo.volume,
                 pitch=spk.pitch + emo.pitch,
                 range=spk.range + emo.range,
                 wordgap=emo.wordgap).clamped()


# Each phase: (lead speaker's emotion weights, other speakers' weights).
_Phase = tuple[dict[str, float], dict[str, float]]

ARCS: dict[str, tuple[_Phase, ...]] = {
    "friendly_chat": (
        ({"neutral": 0.6, "happy": 0.4}, {"neutral": 0.7, "calm": 0.3}),
        ({"happy": 0.7, "neutral": 0.3}, {"happy": 0.6, "neutral": 0.4}),
        ({"happy": 0.5, "calm": 0.5}, {"calm": 0.5, "happy": 0.5}),
    ),
    "heated_argument": (
        ({"neutral": 0.7, "anxious": 0.3}, {"neutral": 0.8, "calm": 0.2}),
        ({"angry": 0.7, "anxious": 0.3}, {"angry": 0.5, "anxious": 0.5}),
        ({"angry": 0.9, "neutral": 0.1}, {"angry": 0.8, "sad": 0.2}),
        ({"calm": 0.6, "sad": 0.4}, {"calm": 0.7, "neutral": 0.3}),
    ),
    "technical_explanation": (
        ({"neutral": 0.8, "calm": 0.2}, {"neutral": 0.7, "anxious": 0.3}),
        ({"calm": 0.6, "neutral": 0.4}, {"neutral": 0.6, "anxious": 0.4}),
        ({"neutral": 0.5, "happy": 0.5}, {"happy": 0.6, "calm": 0.4}),
    ),
    "emotional_confession": (
        ({"anxious": 0.6, "neutral": 0.4}, {"calm": 0.7, "neutral": 0.3}),
        ({"sad": 0.8, "anxious": 0.2}, {"calm": 0.8, "sad": 0.2}),
        ({"sad": 0.6, "calm": 0.4}, {"calm": 0.9, "sad": 0.1}),
        ({"calm": 0.5, "happy": 0.5}, {"happy": 0.5, "calm": 0.5}),
    ),
}
ARC_NAMES = tuple(ARCS)


def arc_emotions(arc: str, speakers: list[int], turn_speakers: list[int],
                 rng: np.random.Generator) -> list[str]:
  """Emotion of each turn: ``turn_speakers[i]`` speaks turn ``i``.

  ``speakers[0]`` is the lead (the one confessing, explaining, or starting
  the argument). Draws use ``rng`` so a conversation's seed fixes them.
  """
  if arc not in ARCS:
    raise ValueError(f"unknown arc {arc!r}; known: {ARC_NAMES}")
  phases = ARCS[arc]
  n = len(turn_speakers)
  out = []
  for i, spk in enumerate(turn_speakers):
    lead, other = phases[min(i * len(phases) // n, len(phases) - 1)]
    weights = lead if spk == speakers[0] else other
    names = sorted(weights)
    p = np.array([weights[k] for k in names], np.float64)
    out.append(names[rng.choice(len(names), p=p / p.sum())])
  return out
