"""Deterministic token conversations for the memory (tests, benchmarks, plans).

``data.source=synthetic_tokens`` with ``model.memory.enabled``: every item
is one conversation of several turns between 2-3 speakers in CSM's frame
layout, its last turn the target, with memory rows as the dialogue corpus
gives them (``memory_rows``). The codes carry something only the history
tells: each speaker has a voice (an offset of its codebook-0 walk) drawn
per conversation, so a model that remembers the speaker's earlier turns
predicts the target's frames better than one that sees the short context
alone. Prosody features are a per-speaker level plus a drift over the
conversation; the semantic vector is a fixed random projection of the
turn's text ids.
"""

from __future__ import annotations

import numpy as np

from csm_jax.config import memory as memory_config
from csm_jax.data.examples import memory_rows
from csm_jax.data.examples.frames import Turn, conversation_rows


class SyntheticMemorySource:
  """Random-access memory rows; item i depends on (seed, i) only."""

  def __init__(self, config, num_examples: int, seed: int):
    m, d = config.model, config.data
    self.seq_len, self.n = d.seq_len, m.n_codebooks
    self.codebook_size, self.text_vocab = m.codebook_size, m.text_vocab
    self.k, self.rows = m.memory.turns, m.memory.turn_rows
    self.context_turns, self.loss_on = d.context_turns, d.loss_on
    self.num_examples, self.seed = num_examples, seed
    self.n_speakers = min(8, max(2, m.text_vocab // 16))
    proj = np.random.default_rng([seed, 0x5E3]).normal(
        size=(self.text_vocab, memory_rows.SEMANTIC_DIM))
    self.projection = proj.astype(np.float32)

  def __len__(self) -> int:
    return self.num_examples

  def _semantic(self, text_ids) -> np.ndarray:
    v = self.projection[np.asarray(text_ids[1:])].sum(axis=0)
    return (v / max(float(np.linalg.norm(v)), 1e-6)).astype(np.float32)

  def _turn(self, rng, speaker: int, voice: int):
    text = np.concatenate([[1 + speaker],
                           rng.integers(16, self.text_vocab,
                                        int(rng.integers(2, 8)))])
    frames = int(rng.integers(4, 16))
    codes = np.zeros((frames, self.n), np.int64)
    c0 = int(text.sum()) % self.codebook_size
    for f in range(frames):
      c0 = (c0 * 5 + 3 + voice) % self.codebook_size
      codes[f, 0] = c0
      for i in range(1, self.n):
        codes[f, i] = (codes[f, i - 1] * 3 + i + voice) % self.codebook_size
    return text.astype(np.int32), codes.astype(np.int32)

  def __getitem__(self, index: int) -> dict:
    if not 0 <= index < self.num_examples:
      raise IndexError(index)
    rng = np.random.default_rng([self.seed, index])
    n_spk = 2 if rng.random() < 0.7 else 3
    speakers = rng.choice(self.n_speakers, n_spk, replace=False)
    voices = rng.integers(0, self.codebook_size, n_spk)
    levels = rng.normal(size=(n_spk, memory_config.PROSODY_FEATURES))
    drift = rng.normal(scale=0.2, size=(memory_config.PROSODY_FEATURES,))
    n_turns = int(rng.integers(2, self.k + 3))
    turns, feats, spk_ids = [], [], []
    for t in range(n_turns):
      j = t % n_spk
      text, codes = self._turn(rng, int(speakers[j]), int(voices[j]))
      turns.append(Turn(text, codes))
      feats.append(np.clip(levels[j] + drift * t, -5, 5).astype(np.float32))
      spk_ids.append(int(speakers[j]))
    target = Turn(turns[-1].text_ids, turns[-1].codes, True)
    context = [Turn(t.text_ids, t.codes, self.loss_on == "all_audio")
               for t in turns[:-1][-self.context_turns:]
               ] if self.context_turns else []
    while context and (sum(t.n_rows(True) for t in context)
                       + target.n_rows(True)) > self.seq_len:
      context.pop(0)
    example = conversation_rows(context + [target], self.n)
    history = memory_rows.memory_fields(
        turns[:-1], feats[:-1], spk_ids[:-1], self.n, self.k, self.rows)
    extra = memory_rows.target_fields(
        example, self.seq_len, target, self._semantic(target.text_ids),
        feats[-1], spk_ids[-1])
    return memory_rows.memory_example(example, self.seq_len, history, extra)
