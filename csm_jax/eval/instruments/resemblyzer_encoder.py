"""Resemblyzer's pretrained speaker encoder as the suite's speaker encoder.

The ``resemblyzer`` wheel ships its trained weights (``pretrained.pt``, a
3-layer LSTM over 40 mel bands giving 256-d embeddings, trained on
thousands of real speakers), so it works offline. Each utterance goes
through Resemblyzer's own preprocessing (16 kHz, volume normalized, long
pauses cut by its voice activity detector) and its utterance embedding
(mean of 1.6 s partial windows, L2-normalized). torch and resemblyzer are
imported when the encoder is built.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from csm_jax.eval.instruments import model_dirs
from csm_jax.eval.instruments import scoring

NAME = "resemblyzer"
_RATE = 16000
# Below this peak an utterance is silence: Resemblyzer's volume
# normalization would divide by its zero level.
_SILENT_PEAK = 1e-4


class ResemblyzerEncoder:
  """Speaker embeddings from Resemblyzer's shipped weights."""

  def __init__(self, flag: str = "--speaker_model"):
    self.torch = model_dirs.require("torch", flag, "resemblyzer")
    resemblyzer = model_dirs.require("resemblyzer", flag, "resemblyzer")
    from resemblyzer import audio as rz_audio  # pylint: disable=g-import-not-at-top
    self._preprocess = rz_audio.preprocess_wav
    self.encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    self.encoder.eval()
    self.weights = os.path.join(os.path.dirname(resemblyzer.__file__),
                                "pretrained.pt")
    try:
      from importlib import metadata  # pylint: disable=g-import-not-at-top
      self.version = metadata.version("resemblyzer")
    except metadata.PackageNotFoundError:
      self.version = "?"

  def describe(self) -> str:
    return f"resemblyzer {self.version} (its shipped pretrained.pt)"

  def _prepared(self, audio, sample_rate: int) -> np.ndarray:
    x = model_dirs.mono_at(audio, sample_rate, _RATE)
    if not len(x) or float(np.abs(x).max()) < _SILENT_PEAK:
      return x
    trimmed = self._preprocess(x)
    # The detector may cut a short or quiet utterance to nothing: then the
    # whole of it is the speech there is.
    return trimmed if len(trimmed) >= _RATE // 4 else x

  def speaker_embeddings(self, audios: Sequence[np.ndarray],
                         sample_rate: int) -> np.ndarray:
    rows = []
    with self.torch.inference_mode():
      for a in audios:
        rows.append(self.encoder.embed_utterance(
            self._prepared(a, sample_rate).astype(np.float32)))
    return scoring.l2_normalize(np.stack(rows) if rows
                                else np.zeros((0, 256), np.float32))
