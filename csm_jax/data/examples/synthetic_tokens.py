"""Deterministic token conversations in CSM's real frame layout.

A test and benchmark fixture: it lets the trainer, the sharding and the
benchmarks run without a corpus or a codec. Each example packs several short
"conversations" (segments); each turn is speaker-tagged text rows followed by
audio frames whose codes follow learnable rules (codebook 0 drifts with the
turn's text, codebook i depends on codebook i-1), so losses fall when a model
learns. It is never the default input once the dialogue corpus exists.
"""

from __future__ import annotations

import numpy as np


class SyntheticTokenSource:
  """Random-access source of packed examples; item i depends on (seed, i)."""

  def __init__(self, config, num_examples: int, seed: int):
    m = config.model
    self.seq_len = config.data.seq_len
    self.n = m.n_codebooks
    self.codebook_size = m.codebook_size
    self.text_vocab = m.text_vocab
    self.num_examples = num_examples
    self.seed = seed
    self.n_speakers = min(8, max(1, m.text_vocab // 16))

  def __len__(self) -> int:
    return self.num_examples

  def _turn(self, rng, speaker: int, state: int):
    n_text = int(rng.integers(2, 10))
    # Id 1..n_speakers act as speaker tags; the rest is text.
    text = np.concatenate([[1 + speaker],
                           rng.integers(16, self.text_vocab, n_text)])
    n_audio = int(rng.integers(4, 24))
    codes = np.zeros((n_audio, self.n), np.int64)
    c0 = (state + int(text.sum())) % self.codebook_size
    for f in range(n_audio):
      c0 = (c0 * 5 + 3 + speaker) % self.codebook_size
      codes[f, 0] = c0
      for i in range(1, self.n):
        codes[f, i] = (codes[f, i - 1] * 3 + i + speaker) % self.codebook_size
    return text, codes, c0

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self.num_examples:
      raise IndexError(index)
    rng = np.random.default_rng([self.seed, index])
    t, n = self.seq_len, self.n
    audio = np.zeros((t, n), np.int32)
    text = np.zeros((t,), np.int32)
    mask = np.zeros((t, n + 1), bool)
    positions = np.zeros((t,), np.int32)
    segments = np.zeros((t,), np.int32)
    loss_mask = np.zeros((t,), bool)
    row, segment = 0, 0
    while row < t - 4:
      segment += 1
      pos, state = 0, int(rng.integers(0, self.codebook_size))
      speakers = rng.choice(self.n_speakers, size=2, replace=False)
      for turn in range(int(rng.integers(1, 5))):
        tt, codes, state = self._turn(rng, int(speakers[turn % 2]), state)
        for kind, rows in (("text", tt), ("audio", codes)):
          k = min(len(rows), t - row)
          if k <= 0:
            break
          sl = slice(row, row + k)
          if kind == "text":
            text[sl] = rows[:k]
            mask[sl, n] = True
          else:
            audio[sl] = rows[:k]
            mask[sl, :n] = True
            loss_mask[sl] = True
          positions[sl] = np.arange(pos, pos + k)
          segments[sl] = segment
          row += k
          pos += k
        if row >= t:
          break
    return {"audio_tokens": audio, "text_tokens": text, "mask": mask,
            "positions": positions, "segment_ids": segments,
            "loss_mask": loss_mask}
