"""What a generation stream yields: a chunk of frames and their audio."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Chunk:
  codes: np.ndarray  # (frames, n_codebooks)
  audio: np.ndarray  # float32 samples
  elapsed_s: float  # since the request started
  eos: bool = False  # this chunk ended on the end-of-speech frame
  # Prosody stream: the plan the frames followed, (frames, 2) F0 and energy
  # ids, and the turn's style id.
  prosody: np.ndarray | None = None
  style: int | None = None
