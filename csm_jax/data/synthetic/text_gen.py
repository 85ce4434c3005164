"""Deterministic conversational transcripts from a small English grammar.

A ``DialogueWriter`` produces the turns of one conversation. It draws every
choice from a numpy ``Generator`` so a seed fixes the whole text. Turns are
built from weighted productions (statements, yes/no and wh- questions,
exclamations, subordinate and conditional clauses, lists, comparisons,
numbers and years spelled out, hedges, backchannels such as "mm, right"),
over the word lists in ``lexicon`` inflected by rule (plurals, third person,
past, participle, gerund) with several tenses and modals.

Coherence: a conversation has a topic from its arc's lexicon; every turn
draws part of its nouns, verbs and adjectives from it, and a reply often
picks up a keyword of the previous turn ("The compost? ..."). The arc also
shapes the sentence mix (arguments accuse and exclaim, explanations give
steps and analogies, confessions hedge and admit) and the emotion of the
turn shifts the weights further (angry and happy exclaim more, anxious asks
and hedges, sad trails off).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Sequence

import numpy as np

from csm_jax.data.synthetic import lexicon as L

PRONOUNS = (("I", "1s"), ("you", "2"), ("we", "p"), ("they", "p"),
            ("she", "3"), ("he", "3"))
OPENERS = {
    "any": ("well,", "so,", "okay,", "right,", "look,", "honestly,",
            "you know,", "I mean,", "actually,", "anyway,", "hmm,"),
    "backchannel": ("Mm, right.", "Uh huh.", "Yeah, totally.", "Oh, I see.",
                    "Right, right.", "Sure.", "Mm hmm.", "Okay.", "Fair enough.",
                    "Yeah.", "Really?", "Go on.", "Oh wow.", "Huh."),
    "happy": ("Oh, brilliant!", "Ha, that's great!", "Oh I love that!",
              "No way, really?", "Amazing!"),
    "angry": ("No, no, no.", "Hold on!", "Excuse me?", "Oh, come on!",
              "Are you serious?", "Unbelievable."),
    "sad": ("I don't know.", "Mm.", "Yeah...", "It's just...", "Sorry."),
    "anxious": ("Um, okay.", "Wait, what?", "Oh no.", "Hang on, um,"),
    "calm": ("Alright.", "That's fine.", "Okay, sure.", "I see."),
}
HEDGES = ("I think", "I guess", "I suppose", "I feel like", "it seems like",
          "maybe", "probably", "to be honest", "if you ask me",
          "as far as I know", "kind of", "I reckon")
SUBORDINATORS = ("because", "although", "when", "while", "since", "after",
                 "before", "unless", "as soon as", "even though", "so that")
WH = ("what", "why", "how", "where", "when", "who")
MODALS = ("might", "should", "could", "would", "must", "can", "will")
TIME_PHRASES = ("last week", "yesterday", "this morning", "tonight",
                "next month", "a while ago", "all the time", "every summer",
                "right now", "later today", "at the weekend", "years ago")


@dataclasses.dataclass(frozen=True)
class TurnText:
  text: str
  keywords: tuple[str, ...]   # nouns the next turn may pick up


class DialogueWriter:
  """Writes the turns of one conversation on one topic of ``arc``."""

  def __init__(self, arc: str, rng: np.random.Generator,
               names: Sequence[str] = (), topic: str | None = None):
    if arc not in L.TOPICS:
      raise ValueError(f"unknown arc {arc!r}; known: {tuple(L.TOPICS)}")
    self.arc = arc
    self.rng = rng
    self.topic = topic or self._pick(sorted(L.TOPICS[arc]))
    if self.topic not in L.TOPICS[arc]:
      raise ValueError(f"unknown topic {self.topic!r} for arc {arc!r}")
    self.t_nouns, self.t_verbs, self.t_adjs = L.TOPICS[arc][self.topic]
    self.names = tuple(names) or tuple(self._pick(L.NAMES) for _ in range(2))
    self._keywords: list[str] = []

  # -- random helpers -------------------------------------------------------
  def _pick(self, seq):
    return seq[int(self.rng.integers(len(seq)))]

  def _p(self, prob: float) -> bool:
    return bool(self.rng.random() < prob)

  def _weighted(self, options: Sequence[tuple[float, Callable[[], str]]]):
    w = np.array([o[0] for o in options], np.float64)
    return options[int(self.rng.choice(len(options), p=w / w.sum()))][1]()

  # -- words ------------------------------------------------------------------
  def noun(self, topical: float = 0.5) -> str:
    n = (self._pick(self.t_nouns) if self._p(topical)
         else self._pick(L.NOUNS))
    self._keywords.append(n)
    return n

  def verb(self, topical: float = 0.4) -> str:
    return (self._pick(self.t_verbs) if self._p(topical)
            else self._pick(L.TRANSITIVE_VERBS))

  def adj(self, topical: float = 0.3) -> str:
    return (self._pick(self.t_adjs) if self._p(topical)
            else self._pick(L.ADJECTIVES))

  def number(self) -> str:
    r = self.rng.random()
    if r < 0.5:
      return L.number_words(int(self.rng.integers(2, 20)))
    if r < 0.85:
      return L.number_words(int(self.rng.integers(20, 1000)))
    return L.number_words(int(self.rng.integers(1000, 100000)))

  # -- phrases ----------------------------------------------------------------
  def np_(self, plural_ok: bool = True) -> str:
    def det_noun():
      n = self.noun()
      if plural_ok and self._p(0.3):
        return self._pick(("the", "some", "those", "all the", "my", "our",
                           "a few", "two")) + " " + L.plural(n)
      det = self._pick(("the", "a", "my", "your", "this", "that", "our",
                        "their", "every", "one"))
      if det == "a" and n[0] in "aeiou":
        det = "an"
      return f"{det} {n}"

    def adj_noun():
      a, n = self.adj(), self.noun()
      art = "an" if a[0] in "aeiou" else "a"
      return self._pick((f"the {a} {n}", f"{art} {a} {n}",
                         f"such {art} {a} {n}", f"my {a} {n}"))

    def possessive():
      who = self._pick(self.names + ("my " + self._pick(L.RELATIVES),))
      return f"{who}'s {self.noun()}"

    def counted():
      return f"{self.number()} {L.plural(self.noun())}"

    return self._weighted([(4, det_noun), (3, adj_noun), (1.5, possessive),
                           (1, counted),
                           (0.7, lambda: "the " + self._pick(L.ABSTRACT_NOUNS))])

  def subject(self) -> tuple[str, str]:
    r = self.rng.random()
    if r < 0.45:
      return self._pick(PRONOUNS)
    if r < 0.65:
      return self._pick(self.names), "3"
    if r < 0.8:
      return "my " + self._pick(L.RELATIVES), "3"
    return "the " + self.noun(), "3"

  def pp(self) -> str:
    return self._weighted([
        (2, lambda: self._pick(("in", "at", "near", "from", "to")) + " "
         + self._pick(L.PLACES)),
        (2, lambda: self._pick(("in", "on", "under", "behind", "next to",
                                "with", "without")) + " " + self.np_()),
        (2, lambda: self._pick(TIME_PHRASES)),
        (1, lambda: self._pick(("last", "on", "every", "next")) + " "
         + self._pick(L.WEEKDAYS)),
        (0.6, lambda: "in " + L.year_words(int(self.rng.integers(1950, 2030)))),
    ])

  def vp(self, person: str, tense: str | None = None) -> str:
    """A verb phrase agreeing with ``person`` ("1s", "2", "3", "p")."""
    tense = tense or self._pick(("present", "past", "past", "future",
                                 "perfect", "progressive", "modal"))
    transitive = self._p(0.8)
    v = self.verb() if transitive else self._pick(L.INTRANSITIVE_VERBS)
    be = {"1s": "am", "3": "is"}.get(person, "are")
    has = "has" if person == "3" else "have"
    form = {
        "present": L.third_person(v) if person == "3" else v,
        "past": L.past(v),
        "future": "will " + v,
        "perfect": f"{has} {L.participle(v)}",
        "progressive": f"{be} {L.gerund(v)}",
        "modal": f"{self._pick(MODALS)} {v}",
    }[tense]
    out = form + (" " + self.np_() if transitive else "")
    if self._p(0.35):
      out += " " + self.pp()
    if self._p(0.2):
      out += " " + self._pick(L.ADVERBS)
    return out

  def clause(self) -> str:
    subj, person = self.subject()
    if self._p(0.12):
      return f"{subj} {self._copula(person)} {self._degree()}{self.adj()}"
    return f"{subj} {self.vp(person)}"

  def _copula(self, person: str) -> str:
    if self._p(0.5):
      return {"1s": "was", "3": "was"}.get(person, "were")
    return {"1s": "am", "3": "is"}.get(person, "are")

  def _degree(self) -> str:
    return self._pick(("", "so ", "really ", "quite ", "a bit ", "very ",
                       "pretty ", "far too ", "not very "))

  # -- sentences --------------------------------------------------------------
  def statement(self) -> str:
    return _cap(self.clause()) + "."

  def hedged(self) -> str:
    return _cap(f"{self._pick(HEDGES)} {self.clause()}") + "."

  def subordinate(self) -> str:
    a, b = self.clause(), self.clause()
    s = self._pick(SUBORDINATORS)
    return _cap(f"{a} {s} {b}" if self._p(0.6) else f"{s} {b}, {a}") + "."

  def conditional(self) -> str:
    subj, person = self.subject()
    return _cap(f"if {subj} {self.vp(person, 'present')}, "
                f"{self.clause()}") + "."

  def yes_no(self) -> str:
    subj, person = self.subject()
    v = self.verb()
    aux = self._pick(("do", "did", "could", "would", "should", "will",
                      "have"))
    if aux == "do" and person == "3":
      aux = "does"
    if aux == "have":
      aux = "has" if person == "3" else "have"
      v = L.participle(v)
    if subj == "I" and aux in ("does", "has"):
      aux = {"does": "do", "has": "have"}[aux]
    tail = " " + self.pp() if self._p(0.3) else ""
    return _cap(f"{aux} {subj} {v} {self.np_()}{tail}") + "?"

  def wh_question(self) -> str:
    w = self._pick(WH)
    return self._weighted([
        (2, lambda: _cap(f"{w} did {self.subject()[0]} {self.verb()} "
                         + ("" if w in ("what", "who") else self.np_())).strip()
         + "?"),
        (1, lambda: _cap(f"{w} is the {self.noun()} so {self.adj()}") + "?"),
        (1, lambda: _cap(f"so {w} happens when {self.clause()}") + "?"),
    ])

  def exclamation(self) -> str:
    a, n = self.adj(), self.noun()
    art = "an" if a[0] in "aeiou" else "a"
    return self._weighted([
        (2, lambda: f"What {art} {a} {n}!"),
        (2, lambda: f"That is {self._degree()}{a}!"),
        (1, lambda: f"I can't believe {self.clause()}!"),
        (1, lambda: f"Oh, the {n} was {self._degree()}{a}!"),
    ])

  def listing(self) -> str:
    items = [self.np_() for _ in range(int(self.rng.integers(2, 5)))]
    lst = ", ".join(items[:-1]) + " and " + items[-1]
    return self._pick((f"We need {lst}.", f"There was {lst}.",
                       f"I bought {lst} {self.pp()}.",
                       f"You'll want {lst}, basically."))

  def comparison(self) -> str:
    return _cap(f"{self.np_()} is {self._pick(('more', 'less'))} "
                f"{self.adj()} than {self.np_()}") + "."

  def numeric(self) -> str:
    return self._pick((
        f"It took about {self.number()} minutes.",
        f"That was back in {L.year_words(int(self.rng.integers(1960, 2030)))}.",
        f"Roughly {L.number_words(int(self.rng.integers(2, 100)))} percent "
        f"of the {L.plural(self.noun())} {self._pick(L.INTRANSITIVE_VERBS)}.",
        f"We counted {self.number()} {L.plural(self.noun())}.",
    ))

  # Arc-specific productions.
  def argue(self) -> str:
    return self._pick((
        f"You always {self.verb()} {self.np_()}!",
        f"I never said {self.clause()}!",
        f"Why would you {self.verb()} my {self.noun()}?",
        f"That's not fair and you know it.",
        f"Don't tell me {self.clause()}.",
        f"It's the {self.noun()} again, isn't it?",
        f"Every single time, {self.clause()}!",
    ))

  def explain(self) -> str:
    n1, n2 = self.noun(0.9), self.noun(0.9)
    return self._pick((
        f"First you {self.verb(0.9)} the {n1}, then the {n2} "
        f"{L.third_person(self.verb(0.9))} {self.np_()}.",
        f"The trick is that {self.clause()}.",
        f"Basically, the {n1} {L.third_person(self.verb(0.9))} the {n2}.",
        f"Think of it like {self.np_()} that {L.third_person(self.verb())} "
        f"{self.np_()}.",
        f"So the {n1} is {self.adj(0.8)}, which means the {n2} stays "
        f"{self.adj(0.8)}.",
        f"Step {L.number_words(int(self.rng.integers(1, 8)))} is to "
        f"{self.verb(0.9)} the {n1}.",
    ))

  def confess(self) -> str:
    return self._pick((
        "I have to tell you something.",
        f"I've been feeling {self._pick(L.FEELINGS)} since the "
        f"{self.noun(0.8)}.",
        f"It's hard to say this, but {self.clause()}.",
        f"I never told anyone that {self.clause()}.",
        f"Sometimes I wonder whether {self.clause()}.",
        f"I'm sorry I didn't {self.verb()} {self.np_()} sooner.",
    ))

  def friendly(self) -> str:
    return self._pick((
        f"We should {self.verb(0.7)} {self.np_()} this weekend!",
        f"Have you ever tried {self.np_()}?",
        f"You would love {self.np_()} {self.pp()}.",
        f"My {self._pick(L.RELATIVES)} swears by {self.np_()}.",
    ))

  def pick_up(self, prev: TurnText) -> str:
    """Opens a reply by returning to a noun of the previous turn."""
    k = self._pick(prev.keywords)
    self._keywords.append(k)
    return self._pick((
        f"The {k}?", f"About the {k},", f"Oh, the {k}.",
        f"You mentioned the {k}.", f"Speaking of the {k},", f"Wait, the {k}?",
        f"Right, the {k}.", f"So, the {k}.", f"As for the {k},",
        f"Going back to the {k},", f"And the {k}?", f"Hang on, the {k}?",
        f"Funny you mention the {k}.", f"The {k}, yes.", f"Ah, the {k}!",
        f"Mm, the {k}."))

  _ARC_PRODUCTION = {"heated_argument": "argue",
                     "technical_explanation": "explain",
                     "emotional_confession": "confess",
                     "friendly_chat": "friendly"}

  def sentence(self, emotion: str) -> str:
    boost = {"angry": ("exclamation", 3), "happy": ("exclamation", 2),
             "anxious": ("yes_no", 2), "sad": ("hedged", 2),
             "calm": ("statement", 2)}.get(emotion, ("statement", 1))
    options = {"statement": 3, "hedged": 2, "subordinate": 2.5,
               "conditional": 1, "yes_no": 2, "wh_question": 1.5,
               "exclamation": 1.2, "listing": 0.8, "comparison": 0.8,
               "numeric": 0.8, self._ARC_PRODUCTION[self.arc]: 3.5}
    options[boost[0]] = options[boost[0]] * boost[1]
    names = sorted(options)
    return self._weighted([(options[k], getattr(self, k)) for k in names])

  def turn(self, emotion: str = "neutral",
           prev: TurnText | None = None) -> TurnText:
    """One turn: optional opener or pick-up, then 1-3 sentences."""
    self._keywords = []
    parts = []
    if prev is not None and self._p(0.15):
      # A bare backchannel turn: "Mm, right." and nothing more.
      parts.append(self._pick(OPENERS["backchannel"]))
      if self._p(0.5):
        return TurnText(parts[0], prev.keywords)
    if prev is not None and prev.keywords and self._p(0.6):
      parts.append(self.pick_up(prev))
    elif self._p(0.35):
      pool = OPENERS.get(emotion, ()) + OPENERS["any"]
      parts.append(self._pick(pool))
    for _ in range(int(self.rng.choice([1, 2, 2, 3]))):
      parts.append(self.sentence(emotion))
    text = _tidy(" ".join(parts), self.names)
    kws = tuple(dict.fromkeys(k for k in self._keywords if " " not in k))
    return TurnText(text, kws or (self.noun(1.0),))


def _cap(s: str) -> str:
  s = s.strip()
  return s[:1].upper() + s[1:]


_PROPER = frozenset(L.NAMES) | frozenset(w for p in L.PLACES for w in p.split())


def _tidy(s: str, names: Sequence[str] = ()) -> str:
  s = re.sub(r"\s+", " ", s).strip()
  # After a comma opener ("well,") the sentence continues in lower case,
  # except for "I" and proper names.
  def lower(m):
    word = m.group(1)
    keep = (word == "I" or word.startswith("I'") or word in _PROPER
            or word.split("'")[0] in names)
    return ", " + (word if keep else word[:1].lower() + word[1:])
  s = re.sub(r",\s+([A-Z][\w']*)", lower, s)
  return _cap(s)


def words(text: str) -> list[str]:
  """Lower-cased word tokens (apostrophes kept) used for counting."""
  return re.findall(r"[a-z']+", text.lower())


def distinct_words(texts: Sequence[str]) -> int:
  return len({w for t in texts for w in words(t)})


def sample_dialogue(seed: int, arc: str, emotions: Sequence[str],
                    names: Sequence[str] = ()) -> list[str]:
  """The texts of one conversation, one turn per entry of ``emotions``."""
  writer = DialogueWriter(arc, np.random.default_rng(seed), names)
  prev, out = None, []
  for emo in emotions:
    prev = writer.turn(emo, prev)
    out.append(prev.text)
  return out
