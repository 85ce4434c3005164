"""The corpus as the instruments see it: its fingerprint and cached features.

``fingerprint`` hashes the files of a prepared corpus (its tfds metadata and
record files), so instruments are cached per corpus content: rebuilding the
same corpus gives the same fingerprint, another corpus or size another one.
``FeatureStore`` holds one split's log-mel frames (float16, concatenated)
with every turn's transcript, speaker and emotion; it is computed once per
corpus and saved as ``features/<split>.npz`` beside the instruments.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import time

import numpy as np

from csm_jax.config.errors import UserError
from csm_jax.data.corpora import registry
from csm_jax.eval.instruments import frontend

_CORPUS_FILES = (".array_record", ".tfrecord", ".labels.txt")
_CORPUS_META = ("dataset_info.json", "features.json")


class CorpusError(UserError, ValueError):
  """The corpus the config names cannot give the instruments what they need."""


def corpus_files(dataset_dir: str) -> list[str]:
  """The files that make up a prepared corpus (not caches written beside)."""
  if not os.path.isdir(dataset_dir):
    raise CorpusError(f"{dataset_dir}: no prepared corpus there")
  names = sorted(n for n in os.listdir(dataset_dir)
                 if os.path.isfile(os.path.join(dataset_dir, n))
                 and (n in _CORPUS_META or any(s in n for s in _CORPUS_FILES)))
  if "dataset_info.json" not in names:
    raise CorpusError(f"{dataset_dir}: no dataset_info.json, so not a "
                      "prepared corpus")
  return [os.path.join(dataset_dir, n) for n in names]


def fingerprint(dataset_dir: str) -> str:
  """A 16-hex-digit SHA-256 of the corpus files' names and contents."""
  h = hashlib.sha256()
  for path in corpus_files(dataset_dir):
    h.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as f:
      for chunk in iter(lambda: f.read(1 << 22), b""):
        h.update(chunk)
  return h.hexdigest()[:16]


def label_names(source, field: str) -> tuple[str, ...]:
  """Class names of a ClassLabel field of a tfds source (empty if none)."""
  try:
    return tuple(source.dataset_info.features[field].names)
  except (AttributeError, KeyError, TypeError):
    return ()


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


@dataclasses.dataclass
class FeatureStore:
  """Log-mel frames and labels of every turn of one split."""

  feats: np.ndarray        # (total frames, N_MELS) float16
  offsets: np.ndarray      # (turns + 1,) int64
  texts: list[str]
  speakers: np.ndarray     # (turns,) int32
  emotions: np.ndarray     # (turns,) int32, -1 where the corpus has none
  conversations: list[str]

  def __len__(self) -> int:
    return len(self.texts)

  def frames(self, i: int) -> np.ndarray:
    return self.feats[self.offsets[i]:self.offsets[i + 1]].astype(np.float32)

  def lengths(self) -> np.ndarray:
    return np.diff(self.offsets)

  def seconds(self) -> float:
    return float(self.offsets[-1] / frontend.FRAME_RATE)

  @classmethod
  def from_source(cls, source, progress: bool = True,
                  label: str = "") -> "FeatureStore":
    feats, texts, spk, emo, conv = [], [], [], [], []
    n, t0 = len(source), time.perf_counter()
    for i in range(n):
      rec = source[i]
      audio = registry.record_audio(rec, frontend.SAMPLE_RATE)
      feats.append(frontend.log_mel(audio).astype(np.float16))
      texts.append(_text(rec.get("text", "")))
      spk.append(int(rec.get("speaker_id", -1)))
      emo.append(int(rec.get("emotion", -1)))
      conv.append(_text(rec.get("conversation_id", "")))
      if progress and (i + 1 == n or (i + 1) % 100 == 0):
        print(f"instrument features {label}: {i + 1}/{n} turns "
              f"({time.perf_counter() - t0:.0f}s)", file=sys.stderr,
              flush=True)
    if not feats:
      raise CorpusError(f"the {label or 'requested'} split has no turns")
    offsets = np.cumsum([0] + [len(f) for f in feats]).astype(np.int64)
    return cls(np.concatenate(feats), offsets, texts,
               np.asarray(spk, np.int32), np.asarray(emo, np.int32), conv)

  def save(self, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, feats=self.feats, offsets=self.offsets,
             texts=np.asarray(self.texts, dtype=str),
             speakers=self.speakers, emotions=self.emotions,
             conversations=np.asarray(self.conversations, dtype=str))
    os.replace(tmp, path)   # never a half-written cache

  @classmethod
  def load(cls, path: str) -> "FeatureStore":
    with np.load(path) as z:
      return cls(z["feats"], z["offsets"], [str(t) for t in z["texts"]],
                 z["speakers"], z["emotions"],
                 [str(c) for c in z["conversations"]])

  def band_stats(self) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over every frame."""
    x = self.feats.astype(np.float32)
    return x.mean(0), x.std(0)


def load_or_build(config, split: str, directory: str,
                  progress: bool = True) -> FeatureStore:
  """The split's features from ``directory/features``, computed if absent."""
  path = os.path.join(directory, "features", f"{split}.npz")
  if os.path.exists(path):
    return FeatureStore.load(path)
  store = FeatureStore.from_source(registry.source(config, split), progress,
                                   label=split)
  store.save(path)
  return store
