"""Model directories a user plugs in as instruments: found, read, classified.

A recognizer or speaker encoder other than the corpus-trained ones is a
local directory saved with ``save_pretrained`` (its ``config.json``, weights
and processor files); nothing is ever downloaded. ``inspect`` reads the
directory's ``config.json`` and says what kind of model it holds, so that a
missing directory, one of another kind, or a missing package is refused in
one line before any minutes of work, naming the flag and the path.
``mono_at`` gives such a model the audio it reads: float mono at its rate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os

import numpy as np

from csm_jax.audio import io as audio_lib
from csm_jax.config.errors import UserError

# Model kinds by what they measure.
WHISPER, CTC, XVECTOR = "whisper", "ctc", "xvector"
RECOGNIZERS = (WHISPER, CTC)
SPEAKER_ENCODERS = (XVECTOR,)
INSTALL = ("pip install -e \".[instruments]\" && pip install --no-deps "
           "resemblyzer==0.1.4")
_WANTED = {
    "--recognizer": "a Whisper or CTC speech recognizer (e.g. "
                    "WhisperForConditionalGeneration, Wav2Vec2ForCTC)",
    "--speaker_model": "a speaker encoder (an x-vector model, e.g. "
                       "WavLMForXVector)",
}


class ModelDirError(UserError, ValueError):
  """A plugged-in model directory is missing, unreadable or of the wrong
  kind, or the package that reads it is not installed."""


@dataclasses.dataclass(frozen=True)
class ModelDir:
  path: str              # absolute
  kind: str              # WHISPER, CTC or XVECTOR
  architecture: str      # as config.json names it

  def describe(self) -> str:
    return f"{self.architecture} ({self.path})"


def _kind(config: dict) -> str | None:
  archs = [str(a) for a in config.get("architectures") or ()]
  if config.get("model_type") == "whisper":
    return WHISPER
  if any(a.endswith("ForCTC") for a in archs):
    return CTC
  if any(a.endswith("ForXVector") for a in archs):
    return XVECTOR
  return None


def inspect(path: str, flag: str) -> ModelDir:
  """The model directory ``path`` given to ``flag``, if it holds the kind of
  model that flag wants; otherwise a ``ModelDirError`` of one line."""
  wanted = _WANTED[flag]
  where = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(where):
    raise ModelDirError(
        f"{flag}: no model directory at {where}: save {wanted} there with "
        "save_pretrained (config.json, weights and processor files); no "
        f"model is downloaded ({where})")
  if not os.path.isdir(where):
    raise ModelDirError(f"{flag}: {where} is a file, not a model directory: "
                        f"give the directory of {wanted} ({where})")
  config_path = os.path.join(where, "config.json")
  if not os.path.exists(config_path):
    raise ModelDirError(
        f"{flag}: {where} holds no config.json, so no model saved with "
        f"save_pretrained: put {wanted} there ({config_path})")
  try:
    with open(config_path) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ModelDirError(f"{flag}: the model's config.json cannot be read: "
                        f"{e} ({config_path})") from e
  if not isinstance(config, dict):
    raise ModelDirError(f"{flag}: the model's config.json is not a JSON "
                        f"object ({config_path})")
  kind = _kind(config)
  archs = config.get("architectures") or [config.get("model_type", "?")]
  architecture = ",".join(str(a) for a in archs)
  accepted = RECOGNIZERS if flag == "--recognizer" else SPEAKER_ENCODERS
  if kind not in accepted:
    raise ModelDirError(
        f"{flag}: {where} holds a {architecture} model, not {wanted} "
        f"({config_path})")
  return ModelDir(where, kind, architecture)


def require(module: str, flag: str, what: str):
  """Imports an optional package, or says in one line how to install it."""
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise ModelDirError(
        f"{flag}: {what} needs the Python package {module!r}, which is not "
        f"installed: {INSTALL} ({module})") from e


def fingerprint(path: str) -> str:
  """A short hash of a directory's or file's names, sizes and modification
  times: a changed model gets its validity measured again."""
  h = hashlib.sha256()
  paths = [path]
  if os.path.isdir(path):
    paths = sorted(os.path.join(root, name)
                   for root, _, files in os.walk(path) for name in files)
  for p in paths:
    st = os.stat(p)
    h.update(f"{os.path.relpath(p, path)}\0{st.st_size}\0"
             f"{st.st_mtime_ns}\n".encode())
  return h.hexdigest()[:16]


def mono_at(audio, sample_rate: int, rate: int) -> np.ndarray:
  """float32 mono at ``rate`` of a float or int16 utterance."""
  x = np.asarray(audio)
  if x.dtype == np.int16:
    x = audio_lib.from_int16(x)
  x = np.asarray(x, np.float32)
  if x.ndim > 1:
    x = x.reshape(len(x), -1).mean(axis=1)
  return audio_lib.resample(x, int(sample_rate), int(rate))
