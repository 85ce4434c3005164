"""The fixed held-out prompt set: turns of validation conversations.

A prompt is one held-out turn to say again: its text, its speaker, its
emotion label and arc, the previous turns of its conversation as context
(text and ground-truth audio, as many as the model was trained with), and
its own recording (the ground truth). Prompts are chosen
deterministically: turns that have at least one earlier turn by the same
speaker in their context (so speaker consistency has a reference),
spread round-robin over conversations so no conversation dominates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from csm_jax.config.errors import UserError
from csm_jax.data.corpora import registry
from csm_jax.data.corpora.turns import turn_positions
from csm_jax.data.text_alignment import turn_timing


class PromptSetError(UserError, ValueError):
  """No usable prompt: the corpus or the selection is empty; names it."""


@dataclasses.dataclass
class Turn:
  speaker: int
  text: str
  audio: np.ndarray   # float32 mono at the prompt set's sample rate
  emotion: str
  turn_index: int
  # (phoneme symbols, start seconds) eSpeak spoke, when the corpus has them.
  alignment: tuple | None = None


@dataclasses.dataclass
class Prompt:
  id: str             # "<conversation>/<turn index>"
  conversation: str
  target: Turn        # what to say, and its ground truth
  context: list       # earlier Turns of the conversation, oldest first
  arc: str

  def same_speaker_context(self) -> list:
    return [t for t in self.context if t.speaker == self.target.speaker]


def _text(v) -> str:
  return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def label_names(config, field: str) -> tuple[str, ...] | None:
  """Class names of a ClassLabel field of the config's corpus, if any."""
  features = tfds.builder_from_directory(registry.dataset_dir(config)).info \
      .features
  if field not in features.keys():
    return None
  feat = features[field]
  return tuple(feat.names) if hasattr(feat, "names") else None


def _label(rec, field: str, names) -> str:
  if field not in rec:
    return ""
  v = rec[field]
  if names is not None and np.ndim(v) == 0 and not isinstance(v, (str, bytes)):
    return names[int(v)]
  return _text(v)


def conversations(config, sample_rate: int, split: str = "validation"
                  ) -> list[tuple[str, str, list[Turn]]]:
  """(conversation id, arc, its turns in order) of a split, by id."""
  src = registry.source(config, split)
  if len(src) == 0:
    raise PromptSetError(f"{registry.dataset_dir(config)}: the {split} split "
                         "is empty; no prompts to evaluate")
  emotions = label_names(config, "emotion")
  arcs = label_names(config, "arc")
  convs = turn_positions(src)
  out = []
  for cid in sorted(convs):
    recs = [src[p] for p in convs[cid]]
    turns = [Turn(int(r["speaker_id"]), _text(r["text"]).strip(),
                  registry.record_audio(r, sample_rate),
                  _label(r, "emotion", emotions), int(r["turn_index"]),
                  turn_timing(r))
             for r in recs]
    out.append((cid, _label(recs[0], "arc", arcs), turns))
  return out


def build_prompts(config, n: int | None, sample_rate: int,
                  context_turns: int | None = None,
                  split: str = "validation") -> list[Prompt]:
  """Up to ``n`` prompts (all when None) of the config's held-out split."""
  if n is not None and n < 1:
    raise PromptSetError(f"--prompts: must be at least 1, got {n}")
  k = config.data.context_turns if context_turns is None else context_turns
  per_conv = []
  for cid, arc, turns in conversations(config, sample_rate, split):
    chosen = []
    for i, t in enumerate(turns):
      ctx = turns[max(0, i - k):i]
      if t.text and any(c.speaker == t.speaker for c in ctx):
        chosen.append(Prompt(f"{cid}/{t.turn_index}", cid, t, ctx, arc))
    per_conv.append(chosen)
  prompts = []
  while any(per_conv) and (n is None or len(prompts) < n):
    for chosen in per_conv:
      if chosen and (n is None or len(prompts) < n):
        prompts.append(chosen.pop(0))
  if not prompts:
    raise PromptSetError(
        f"{registry.dataset_dir(config)}: no {split} turn has an earlier turn "
        f"of its speaker within {k} turns of context; nothing to evaluate")
  return prompts
