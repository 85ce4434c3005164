"""The text stream's layout: ``prefix`` (CSM's) or ``aligned`` (text on frames).

``model.text_stream="prefix"`` is CSM as released: a turn's text rows, then
its audio frames. ``"aligned"`` puts the token being spoken in the text
column of every frame, the text leading the audio by ``model.text_lead``
rows and each row also showing the ``text_lookahead`` tokens after its
own, with an advance head that says when the next row moves on to the
next token (``data.examples.frames``, ``inference.aligned``). Timings come
from the corpus's phoneme events, so ``aligned`` reads phoneme tokens. The
prosody stream (``model.prosody``) and the dual memory (``model.memory``)
work on either layout.

``model.emotion_tag`` (aligned only; inert on ``prefix``, as the lead and
the lookahead are) adds a third tag row to every turn,
its emotion (or "unknown"), after ``[bos] [speaker]``: on the embedded
corpus the emotion sets the speaking rate (0.78x to 1.25x), which a model
that is not told it must guess. ``emotion_tag_dropout`` of the training
turns show "unknown" instead, so a request without an emotion is one the
model has seen.

Configs saved before the switch have none of these fields: ``stream(m)``
reads them as ``prefix``.
"""

from __future__ import annotations

STREAMS = ("prefix", "aligned")
# The switch's fields in config.model (add_fields).
FIELDS = ("text_stream", "text_lead", "text_lookahead", "advance_loss_weight",
          "emotion_tag", "emotion_tag_dropout")


def add_fields(m) -> None:
  """The switch's fields in ``config.model`` (defaults: today's CSM)."""
  m.text_stream = "prefix"
  # Rows the text leads the audio by (aligned only): the frame predicted
  # from row t is spoken while the token of row t + text_lead - 1 shows.
  m.text_lead = 2
  # Tokens after the current one shown on each row (aligned only): how
  # long a sound lasts depends on what follows it, which the row must see.
  m.text_lookahead = 2
  m.advance_loss_weight = 1.0
  # A turn's emotion as a tag row (aligned only; module docstring).
  m.emotion_tag = False
  m.emotion_tag_dropout = 0.2


def stream(m) -> str:
  return m.get("text_stream", "prefix")


def aligned(m) -> bool:
  return stream(m) == "aligned"


def lead(m) -> int:
  return int(m.get("text_lead", 2))


def lookahead(m) -> int:
  return int(m.get("text_lookahead", 0)) if aligned(m) else 0


def emotion_tag(m) -> bool:
  return aligned(m) and bool(m.get("emotion_tag", False))


def validate(c, check) -> None:
  m = c.model
  check(stream(m) in STREAMS, "model.text_stream",
        f"{stream(m)!r} not in {STREAMS}")
  if not aligned(m):
    return   # the aligned stream's fields are inert on the prefix stream
  check(0.0 <= m.get("emotion_tag_dropout", 0.0) < 1.0,
        "model.emotion_tag_dropout",
        f"must be in [0, 1), got {m.get('emotion_tag_dropout')}")
  check(m.text_lead >= 1, "model.text_lead",
        f"must be >= 1 (the first row carries text only), got {m.text_lead}")
  check(m.text_lookahead >= 0, "model.text_lookahead",
        f"must be >= 0, got {m.text_lookahead}")
  check(m.advance_loss_weight > 0, "model.advance_loss_weight",
        f"must be positive with the aligned stream, got "
        f"{m.advance_loss_weight}")
  check(c.data.tokenizer_type == "phoneme", "model.text_stream",
        "'aligned' lays phoneme tokens on their frames; set "
        f"data.tokenizer_type='phoneme' (got {c.data.tokenizer_type!r})")
  check(c.data.source == "dialogues", "model.text_stream",
        "'aligned' needs turn timings, which only dialogues corpora hold "
        f"(data.source={c.data.source!r})")


def structural(m) -> dict:
  """What a checkpoint records of the switch: nothing for ``prefix`` (so
  runs from before it compare equal), the layout for ``aligned``."""
  if not aligned(m):
    return {}
  out = {"text_stream": "aligned", "text_lead": lead(m),
         "text_lookahead": lookahead(m)}
  if emotion_tag(m):   # recorded only when on: earlier runs compare equal
    out["emotion_tag"] = True
  return out
