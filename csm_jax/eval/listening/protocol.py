"""The CMOS protocol: the 7-point scale, the two questions, and the plan of
one rater session (random order, random sides, trap pairs mixed in)."""

from __future__ import annotations

import dataclasses
import random
import secrets

from csm_jax.eval.listening import pairs as pairs_lib

# Negative prefers side A, positive side B, as on the page from left to right.
SCALE = ((-3, "A much better"), (-2, "A better"), (-1, "A slightly better"),
         (0, "No preference"), (1, "B slightly better"), (2, "B better"),
         (3, "B much better"))
MIN_SCORE, MAX_SCORE = SCALE[0][0], SCALE[-1][0]

QUESTIONS = {
    "no_context": "Which recording sounds more natural, more like a human "
                  "speaking?",
    "context": "Listen to the previous turn of the conversation first. Which "
               "recording is the more appropriate continuation of it?",
}
TITLES = {"no_context": "Without context", "context": "With context"}

SIDES = ("ours", "baseline", "trap")


@dataclasses.dataclass(frozen=True)
class Trial:
  """One pair as one session sees it; ``pair`` is its opaque public key."""
  pair: str
  position: int
  item_id: str
  condition: str
  side_a: str               # which system plays as A: ours | baseline | trap
  audio_a: str
  audio_b: str
  context: str | None = None
  text: str = ""
  context_text: str = ""

  @property
  def is_trap(self) -> bool:
    return self.side_a == "trap"


def signed_score(score: int, side_a: str) -> int | None:
  """The raw A-vs-B score as "ours minus baseline" (None for a trap).

  The page runs from -3 (A much better) to +3 (B much better), so with ours
  on side B the raw score already favours ours when positive.
  """
  if side_a == "trap":
    return None
  if side_a == "ours":
    return -score
  if side_a == "baseline":
    return score
  raise ValueError(f"side_a must be one of {SIDES}, got {side_a!r}")


def _real(item: pairs_lib.Item, condition: str, rng: random.Random) -> dict:
  side_a = rng.choice(("ours", "baseline"))
  a, b = ((item.ours, item.baseline) if side_a == "ours"
          else (item.baseline, item.ours))
  return dict(item_id=item.id, condition=condition, side_a=side_a, audio_a=a,
              audio_b=b)


def _trap(item: pairs_lib.Item, condition: str, rng: random.Random) -> dict:
  clip = rng.choice((item.ours, item.baseline))
  return dict(item_id=item.id, condition=condition, side_a="trap",
              audio_a=clip, audio_b=clip)


def plan_session(ps: pairs_lib.PairSet, rng: random.Random | None = None,
                 max_items: int | None = None) -> list[Trial]:
  """Every trial of one new session, in the order it will be played.

  Conditions come as blocks in random order (the question changes between
  them, so mixing them would confuse raters); inside a block the items and
  the trap pairs are shuffled and each real pair gets a random side.
  """
  rng = rng or random.SystemRandom()
  blocks = list(ps.conditions)
  rng.shuffle(blocks)
  plan = []
  for condition in blocks:
    items = [it for it in ps.items
             if condition == "no_context" or it.context]
    if max_items is not None and max_items < len(items):
      items = rng.sample(items, max_items)
    block = [(_real(it, condition, rng), it) for it in items]
    block += [(_trap(it, condition, rng), it)
              for it in (rng.choice(items) for _ in range(ps.traps))]
    rng.shuffle(block)
    plan.extend(block)
  trials = []
  for position, (fields, item) in enumerate(plan):
    with_context = fields["condition"] == "context"
    trials.append(Trial(
        # Secret, not from rng: a rater must not guess another trial's key.
        pair=secrets.token_urlsafe(12), position=position,
        context=item.context if with_context else None, text=item.text,
        context_text=item.context_text if with_context else "", **fields))
  return trials


def public(trial: Trial, total: int, conditions: list[str]) -> dict:
  """What the page may know about a trial: nothing that reveals the sides."""
  audio = {"a": f"/audio/{trial.pair}/a", "b": f"/audio/{trial.pair}/b"}
  if trial.context:
    audio["context"] = f"/audio/{trial.pair}/context"
  return {"done": False, "pair": trial.pair, "position": trial.position,
          "total": total, "condition": trial.condition,
          "title": TITLES[trial.condition],
          "part": conditions.index(trial.condition) + 1,
          "parts": len(conditions), "question": QUESTIONS[trial.condition],
          "text": trial.text, "context_text": trial.context_text,
          "audio": audio}
