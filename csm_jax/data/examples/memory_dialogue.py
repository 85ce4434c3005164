"""Memory training examples from a dialogue corpus (``model.memory``).

Wraps the plain examples (``dialogue.DialogueExamples``, which tokenizes
and caches every turn once): each of its targets becomes one batch row,
its context + target as without memory, plus the ``memory.turns`` turns
before the target in its conversation and the target's semantic vector,
prosody features and speaker (``memory_rows``). One extra pass over the
split's records reads what the plain examples do not keep: conversation
order, prosody and semantic features.

On the aligned text stream a memory turn is its tag rows and text tokens
(``memory_rows.aligned_memory_rows``, no timings read): every earlier turn
is written, also one whose tokens could not be laid on its frames (which
the plain examples leave out), as generation writes every turn.
"""

from __future__ import annotations

import numpy as np

from csm_jax.data.examples import memory_rows
from csm_jax.data.examples.dialogue import DialogueExamples, dialogue_source
from csm_jax.data.examples.frames import Turn


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class MemoryDialogueExamples:
  """Random-access source of memory rows (a grain MapDataset source)."""

  def __init__(self, base: DialogueExamples, records, turns: int,
               turn_rows: int):
    self.base, self.k, self.rows = base, turns, turn_rows
    self.seq_len = base.seq_len
    convs: dict[str, list[tuple[int, int]]] = {}
    self.features, self.semantic, self.speakers = [], [], []
    for pos in range(len(records)):
      rec = records[pos]
      convs.setdefault(_text(rec["conversation_id"]), []).append(
          (int(rec["turn_index"]), pos))
      pro = np.asarray(rec["prosody"], np.float32)
      # A corpus built without features stores zeros: absent, not silence.
      self.features.append(memory_rows.memory_features(pro)
                           if np.any(pro) else None)
      self.semantic.append(np.asarray(rec["semantic"], np.float32))
      self.speakers.append(int(rec["speaker_id"]))
    self.history: dict[int, list[int]] = {}
    for items in convs.values():
      order = [p for _, p in sorted(items)]
      for i, p in enumerate(order):
        self.history[p] = order[max(0, i - turns):i]
    self.targets = list(base.targets)
    aligner = base.aligner
    self.ahead = None if aligner is None else aligner.ahead
    # Aligned: each turn's text tokens (its tag rows apart), tokenized
    # here for the turns the plain examples could not align.
    self.tokens = [] if aligner is None else [
        np.asarray(s[0] if s is not None
                   else aligner.tokenizer.encode(base.meta[p][0]), np.int32)
        for p, s in enumerate(base.streams)]

  def _turn(self, pos: int, trained: bool = False) -> Turn:
    codes = self.base.codes.codes[pos][:, :self.base.n].astype(np.int32)
    if self.ahead is None:
      return Turn(self.base.ids[pos], codes, trained)
    return Turn(self.base.ids[pos], codes, trained,
                stream=(self.tokens[pos], None))

  def __len__(self) -> int:
    return len(self.targets)

  def __getitem__(self, index: int) -> dict:
    target = self.targets[index]
    pos = target[0]
    example = self.base.example(target)
    hist = self.history[pos]
    history = memory_rows.memory_fields(
        [self._turn(p) for p in hist], [self.features[p] for p in hist],
        [self.speakers[p] for p in hist], self.base.n, self.k, self.rows,
        self.ahead)
    extra = memory_rows.target_fields(
        example, self.seq_len, self._turn(pos, True), self.semantic[pos],
        self.features[pos], self.speakers[pos])
    return memory_rows.memory_example(example, self.seq_len, history, extra)


def memory_dialogue_source(config, split: str, codec,
                           tokenizer) -> MemoryDialogueExamples:
  """Memory rows of one corpus split (see ``dialogue.dialogue_source``)."""
  from csm_jax.data.corpora import registry  # pylint: disable=g-import-not-at-top
  base = dialogue_source(config, split, codec, tokenizer)
  mem = config.model.memory
  return MemoryDialogueExamples(base, registry.source(config, split),
                                mem.turns, mem.turn_rows)
