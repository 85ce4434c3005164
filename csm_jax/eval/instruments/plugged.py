"""Instruments plugged in by name: another recognizer or speaker encoder in
place of the corpus-trained one, with its validity on the same ground truth.

``select_instruments(config, recognizer=..., speaker_model=...)`` is what
``python -m csm_jax.evaluate --recognizer=DIR --speaker_model=NAME`` runs:

- ``recognizer``: ``"corpus"`` (default: the CTC recognizer trained on the
  corpus) or a local directory holding a Whisper model or any CTC model
  saved with ``save_pretrained`` (``transformers_models``);
- ``speaker_model``: ``"corpus"`` (default), ``"resemblyzer"`` (the
  weights the ``resemblyzer`` wheel ships) or a local directory holding an
  x-vector model.

The corpus's own instruments are always built (the emotion classifier and
the prosody tracker have no replacement here). A plugged instrument is
measured on the corpus's validation split exactly as the corpus-trained
one is (CER/WER against the transcripts; EER over every pair of turns),
once per model and corpus: the figures are cached beside the corpus's
instruments, in ``plugged/``, keyed by the model's files. Specs are
checked (directory present, of the right kind, packages installed)
before anything is trained or loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np

from csm_jax.eval.instruments import model_dirs
from csm_jax.eval.instruments import validity as validity_lib

CORPUS = "corpus"
RESEMBLYZER = "resemblyzer"
# Bump when what ``_measure`` reports changes.
VERSION = 1


def _print(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def check(recognizer: str | None = CORPUS,
          speaker_model: str | None = CORPUS) -> dict:
  """The plugged models asked for, checked but not loaded: slot ->
  ``ModelDir`` (or ``RESEMBLYZER``). Raises ``ModelDirError``."""
  plugs = {}
  if recognizer and recognizer != CORPUS:
    plugs["recognizer"] = model_dirs.inspect(recognizer, "--recognizer")
  if speaker_model and speaker_model != CORPUS:
    if speaker_model.lower() == RESEMBLYZER:
      model_dirs.require("torch", "--speaker_model", RESEMBLYZER)
      model_dirs.require("resemblyzer", "--speaker_model", RESEMBLYZER)
      plugs["speaker"] = RESEMBLYZER
    else:
      plugs["speaker"] = model_dirs.inspect(speaker_model, "--speaker_model")
  return plugs


def load_plugged(plugs: dict) -> dict:
  """slot -> the loaded instrument of each checked plug."""
  # pylint: disable=g-import-not-at-top
  out = {}
  for slot, plug in plugs.items():
    if plug == RESEMBLYZER:
      from csm_jax.eval.instruments.resemblyzer_encoder import \
          ResemblyzerEncoder
      out[slot] = ResemblyzerEncoder()
      continue
    from csm_jax.eval.instruments import transformers_models as tm
    cls = {model_dirs.WHISPER: tm.WhisperRecognizer,
           model_dirs.CTC: tm.CTCRecognizer,
           model_dirs.XVECTOR: tm.XVectorEncoder}[plug.kind]
    out[slot] = cls(plug)
  return out


class PluggedInstruments:
  """The corpus's instruments with the recognizer and/or the speaker encoder
  replaced; everything else (emotion, prosody, the CTC log-probabilities of
  forced alignment, which need the corpus's alphabet) is the corpus's.
  ``validity`` holds the figures of the instruments actually in use."""

  def __init__(self, base, recognizer=None, speaker=None,
               validity: dict | None = None):
    self.base, self.recognizer, self.speaker = base, recognizer, speaker
    self.validity = dict(validity or base.validity)
    self.sample_rate = base.sample_rate
    self.emotion_names = base.emotion_names
    self.directory, self.fingerprint = base.directory, base.fingerprint
    self.lm = base.lm
    self.seconds_per_frame = base.seconds_per_frame

  def transcribe(self, audios: Sequence[np.ndarray], sample_rate: int,
                 decoder: str = "lm") -> list[str]:
    """The plugged recognizer's transcripts (``decoder`` chooses among the
    corpus recognizer's decoders only)."""
    if self.recognizer is None:
      return self.base.transcribe(audios, sample_rate, decoder=decoder)
    return self.recognizer.transcribe(audios, sample_rate)

  def speaker_embeddings(self, audios: Sequence[np.ndarray],
                         sample_rate: int) -> np.ndarray:
    if self.speaker is None:
      return self.base.speaker_embeddings(audios, sample_rate)
    return self.speaker.speaker_embeddings(audios, sample_rate)

  def emotion_probs(self, audios, sample_rate: int) -> np.ndarray:
    return self.base.emotion_probs(audios, sample_rate)

  def ctc_log_probs(self, audio, sample_rate: int):
    return self.base.ctc_log_probs(audio, sample_rate)

  def ctc_log_probs_many(self, audios, sample_rate: int):
    return self.base.ctc_log_probs_many(audios, sample_rate)

  def prosody(self, audio, sample_rate: int, text: str = "") -> dict:
    # The speaking rate counts the words of the recognizer in use.
    if not text and len(audio):
      text = self.transcribe([audio], sample_rate)[0]
    return self.base.prosody(audio, sample_rate, text=text)


def _identity(plug, instrument) -> str:
  if plug == RESEMBLYZER:
    return f"{RESEMBLYZER}:{model_dirs.fingerprint(instrument.weights)}"
  return f"{plug.kind}:{plug.path}:{model_dirs.fingerprint(plug.path)}"


def _measure(slot: str, instrument, config, fingerprint: str) -> dict:
  audios, rate, texts, speakers, _ = validity_lib.validation_records(config)
  t0 = time.perf_counter()
  if slot == "recognizer":
    figures, _ = validity_lib.recognizer_figures(
        instrument.transcribe, audios, rate, texts)
    figures["decoder"] = instrument.describe()
  else:
    figures, _, _ = validity_lib.speaker_figures(
        instrument.speaker_embeddings, audios, rate, speakers)
  figures.update(instrument=instrument.describe(), corpus=fingerprint,
                 wall_s=round(time.perf_counter() - t0, 1))
  return figures


def plugged_validity(slot: str, plug, instrument, config, directory: str,
                     fingerprint: str, progress: Callable = _print) -> dict:
  """The validity figures of a plugged instrument on ``config``'s corpus,
  measured once and cached in ``directory``/plugged/."""
  key = hashlib.sha256(
      f"{slot}\0{_identity(plug, instrument)}\0{VERSION}".encode()
  ).hexdigest()[:16]
  path = os.path.join(directory, "plugged", f"{slot}-{key}.json")
  try:
    with open(path) as f:
      cached = json.load(f)
    if cached.get("corpus") == fingerprint:
      return cached
  except (OSError, json.JSONDecodeError):
    pass
  progress(f"measuring the plugged {slot} ({instrument.describe()}) on the "
           "validation split")
  figures = _measure(slot, instrument, config, fingerprint)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(figures, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return figures


def select_instruments(config, recognizer: str | None = CORPUS,
                       speaker_model: str | None = CORPUS,
                       overrides: dict | None = None,
                       progress: Callable | None = None):
  """The instruments an evaluation of ``config``'s corpus scores with: the
  corpus-trained ones (``ensure_instruments``), with the recognizer and the
  speaker encoder replaced where asked (see module docstring)."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.instruments.cache import ensure_instruments
  plugs = check(recognizer, speaker_model)
  loaded = load_plugged(plugs)   # a broken model fails before training
  base = ensure_instruments(config, progress=progress, overrides=overrides)
  if not loaded:
    return base
  validity = dict(base.validity)
  for slot, instrument in loaded.items():
    validity[slot] = plugged_validity(slot, plugs[slot], instrument, config,
                                      base.directory, base.fingerprint,
                                      progress or _print)
  return PluggedInstruments(base, loaded.get("recognizer"),
                            loaded.get("speaker"), validity)
