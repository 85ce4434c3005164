"""Long conversations with persistent speaker personas (the ``long`` corpus).

For the conversational memory (docs/memory.md) conversations must outlast
the model's context: these have 12-20 turns (the default corpus 4-12).
Every speaker also has a *persona*, the same in every long conversation
(``persona_of``): a temperament that multiplies the arc's emotion weights
of that speaker's turns, so that how a speaker sounds persists across the
turns and across conversations (a cheerful speaker stays mostly happy
through a calm chat and is less angry in an argument than an irritable
one). Plans are drawn from ``(seed, index)`` with their own random stream
and conversation ids (``s{seed}-L{index}``), so they never collide with the
default corpus's conversations, which are unchanged.
"""

from __future__ import annotations

import numpy as np

from csm_jax.data.synthetic import dialogues as sd
from csm_jax.data.synthetic import text_gen
from csm_jax.data.synthetic import voices

MIN_TURNS, MAX_TURNS = 12, 20
# Persona -> emotion weight multipliers (emotions not named keep 1).
PERSONAS: dict[str, dict[str, float]] = {
    "cheerful": {"happy": 4.0, "sad": 0.3, "angry": 0.3},
    "gloomy": {"sad": 4.0, "happy": 0.3, "calm": 1.5},
    "irritable": {"angry": 4.0, "calm": 0.3, "anxious": 1.5},
    "nervous": {"anxious": 4.0, "calm": 0.3},
    "serene": {"calm": 4.0, "angry": 0.2, "anxious": 0.3},
}
PERSONA_NAMES = tuple(PERSONAS)


def persona_of(speaker_id: int) -> str:
  """A speaker's persona: fixed by its id, the same in every conversation."""
  return PERSONA_NAMES[int(speaker_id) % len(PERSONA_NAMES)]


def conversation_id(seed: int, index: int) -> str:
  return f"s{seed}-L{index:06d}"


def persona_emotions(arc: str, speakers, turn_speakers,
                     rng: np.random.Generator) -> list[str]:
  """Each turn's emotion: the arc's phase weights (``voices.ARCS``) times
  the speaker's persona multipliers, drawn from ``rng``."""
  phases = voices.ARCS[arc]
  n = len(turn_speakers)
  out = []
  for i, spk in enumerate(turn_speakers):
    lead, other = phases[min(i * len(phases) // n, len(phases) - 1)]
    base = lead if spk == speakers[0] else other
    bias = PERSONAS[persona_of(spk)]
    # Every emotion stays possible, so a persona leans and never locks.
    names = list(voices.EMOTION_NAMES)
    p = np.array([(base.get(k, 0.0) + 0.05) * bias.get(k, 1.0)
                  for k in names], np.float64)
    out.append(names[rng.choice(len(names), p=p / p.sum())])
  return out


def plan_long_conversation(seed: int, index: int) -> sd.ConversationSpec:
  """Everything about long conversation ``index`` except its audio."""
  if index < 0:
    raise ValueError(f"conversation index must be >= 0, got {index}")
  rng = np.random.default_rng([seed, index, 0x10C6])
  cid = conversation_id(seed, index)
  arc = voices.ARC_NAMES[int(rng.integers(len(voices.ARC_NAMES)))]
  n_spk = 2 if rng.random() < 0.75 else 3
  spk = tuple(int(s) for s in rng.choice(len(voices.SPEAKERS), n_spk,
                                         replace=False))
  n_turns = int(rng.integers(MIN_TURNS, MAX_TURNS + 1))
  order = [spk[0]]
  for _ in range(n_turns - 1):
    others = [s for s in spk if s != order[-1]]
    order.append(others[int(rng.integers(len(others)))])
  emotions = persona_emotions(arc, list(spk), order, rng)
  names = [voices.speaker(s).name.capitalize() for s in spk]
  writer = text_gen.DialogueWriter(arc, rng, names)
  turns, prev = [], None
  for i, (s, emo) in enumerate(zip(order, emotions)):
    prev = writer.turn(emo, prev)
    pause = 0.0 if i == 0 else float(np.round(rng.uniform(0.15, 0.7), 3))
    turns.append(sd.TurnSpec(cid, i, s, emo, arc, prev.text, pause))
  return sd.ConversationSpec(cid, index, arc, writer.topic, spk, tuple(turns))


def plan_long_corpus(seed: int, target_seconds: float,
                     min_conversations: int = 1) -> list[sd.ConversationSpec]:
  """Long conversations 0, 1, ... until their estimated speech time
  reaches ``target_seconds`` (``dialogues.plan_corpus`` for long ones)."""
  if target_seconds <= 0:
    raise ValueError(f"target duration must be positive, got "
                     f"{target_seconds} s")
  plans, total = [], 0.0
  while total < target_seconds or len(plans) < min_conversations:
    plans.append(plan_long_conversation(seed, len(plans)))
    total += plans[-1].estimated_seconds()
  return plans
