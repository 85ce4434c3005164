"""Prosody contours of a corpus split, cached beside its codec tokens.

The contours (``prosody_tokens.Contour`` per turn, on the codec's frame
grid) are the costly part (pyin); they are computed once per split and
stored under the same key as the codec tokens: ``<dataset dir>/codes/
<codec fingerprint>/prosody/<split>-<corpus fingerprint>.npz``, so a new
codec or a rebuilt corpus recomputes them and nothing else does. Beside
them, ``stats-<train corpus fingerprint>-<spec>.json`` holds the training
split's ``ProsodyStats`` (speaker F0 normalization, energy edges, style
classes and intensity edges) for one binning spec. Tokens are derived from
contours and stats on the fly (cheap), so the F0 bin count can change
without recomputing anything.
"""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np
from tqdm import tqdm

from csm_jax.data import prosody_tokens as pt
from csm_jax.data.cache_keys import corpus_fingerprint, fingerprint

PROSODY_DIR = "prosody"
EXPORT_STATS = "prosody_stats.json"   # the stats' copy inside an export
LABELS_FILE = "emotion.labels.txt"   # tfds' ClassLabel names of "emotion"


class ContourCache:
  """Contours, speakers, style features and emotion labels of one split."""

  def __init__(self, contours, speakers, style_feats, labels):
    self.contours = contours
    self.speakers = np.asarray(speakers, np.int64)
    self.style_feats = np.asarray(style_feats, np.float64)
    self.labels = np.asarray(labels, np.int64)

  @staticmethod
  def path(dataset_dir: str, codec_fp: str, split: str, corpus_fp: str) -> str:
    return os.path.join(dataset_dir, "codes", codec_fp, PROSODY_DIR,
                        f"{split}-{corpus_fp}.npz")

  @classmethod
  def load(cls, path: str) -> "ContourCache":
    with np.load(path) as z:
      off = z["offsets"]
      contours = [pt.Contour(z["log_f0"][off[i]:off[i + 1]],
                             z["energy_db"][off[i]:off[i + 1]])
                  for i in range(len(off) - 1)]
      return cls(contours, z["speakers"], z["style_feats"], z["labels"])

  @classmethod
  def load_or_build(cls, source, frame_rate: float, path: str
                    ) -> "ContourCache":
    if os.path.exists(path):
      return cls.load(path)
    contours, speakers, feats, labels = [], [], [], []
    for i in tqdm(range(len(source)), unit="turn",
                  desc=f"prosody contours {os.path.basename(path)}"):
      rec = source[i]
      sr = int(rec["sample_rate"])
      contours.append(pt.frame_contour(np.asarray(rec["audio"]), sr,
                                       frame_rate))
      speakers.append(int(rec["speaker_id"]))
      feats.append(pt.style_features(rec["prosody"]))
      labels.append(int(rec["emotion"]) if "emotion" in rec else -1)
    off = np.cumsum([0] + [len(c) for c in contours])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, log_f0=np.concatenate([c.log_f0 for c in contours]),
             energy_db=np.concatenate([c.energy_db for c in contours]),
             offsets=off, speakers=np.asarray(speakers, np.int64),
             style_feats=np.asarray(feats, np.float64),
             labels=np.asarray(labels, np.int64))
    os.replace(tmp, path)   # never a half-written cache
    split = os.path.basename(path).split("-")[0]
    for old in glob.glob(os.path.join(os.path.dirname(path), f"{split}-*.npz")):
      if old != path:
        os.remove(old)      # an earlier build of this split: unreadable now
    return cls(contours, speakers, feats, labels)


def spec_key(spec) -> str:
  """The binning fields the stats depend on, hashed."""
  key = f"e{spec.energy_bins}-s{spec.style_classes}-i{spec.intensity_bins}"
  return hashlib.sha256(key.encode()).hexdigest()[:8]


def label_names(dataset_dir: str) -> list[str] | None:
  path = os.path.join(dataset_dir, LABELS_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    names = [line.strip() for line in f if line.strip()]
  return names or None


def codec_key(codec_dir: str) -> str:
  return fingerprint([os.path.join(codec_dir, f)
                      for f in ("config.json", "weights.npz")])


def _registry():
  from csm_jax.data.corpora import registry  # pylint: disable=g-import-not-at-top
  return registry


def contour_cache(config, split: str, codec_dir: str, frame_rate: float
                  ) -> ContourCache:
  registry = _registry()
  dataset_dir = registry.dataset_dir(config)
  path = ContourCache.path(dataset_dir, codec_key(codec_dir), split,
                           corpus_fingerprint(dataset_dir, split))
  if os.path.exists(path):
    return ContourCache.load(path)
  return ContourCache.load_or_build(registry.source(config, split),
                                    frame_rate, path)


def stats_path(config, codec_dir: str) -> str:
  """Where the training split's stats for ``config.model.prosody`` live."""
  dataset_dir = _registry().dataset_dir(config)
  return os.path.join(dataset_dir, "codes", codec_key(codec_dir), PROSODY_DIR,
                      f"stats-{corpus_fingerprint(dataset_dir, 'train')}-"
                      f"{spec_key(config.model.prosody)}.json")


def ensure_stats(config, codec_dir: str, frame_rate: float
                 ) -> pt.ProsodyStats:
  """The training split's stats, computed (and stored) on first use."""
  path = stats_path(config, codec_dir)
  if os.path.exists(path):
    return pt.ProsodyStats.load(path)
  train = contour_cache(config, "train", codec_dir, frame_rate)
  names = label_names(_registry().dataset_dir(config))
  stats = pt.fit_stats(train.contours, train.speakers, train.style_feats,
                       train.labels, names, config.model.prosody,
                       seed=config.data.seed)
  stats.save(path)
  return stats


class ProsodyTurns:
  """Prosody tokens and the style of every record of one split."""

  def __init__(self, bins: pt.ProsodyBins, cache: ContourCache):
    self.bins, self.cache = bins, cache
    self.styles = [bins.turn_style(cache.style_feats[i], cache.speakers[i],
                                   cache.labels[i])
                   for i in range(len(cache.contours))]

  def tokens(self, pos: int, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 ids, energy ids) of record ``pos`` on exactly ``n_frames``.

    The codec may give a frame more or less than the audio's length
    implies; missing frames are unvoiced at the quietest level.
    """
    f0, energy = self.bins.tokens(self.cache.contours[pos],
                                  int(self.cache.speakers[pos]))
    out_f0 = np.full((n_frames,), self.bins.unvoiced, np.int32)
    out_e = np.zeros((n_frames,), np.int32)
    k = min(n_frames, len(f0))
    out_f0[:k], out_e[:k] = f0[:k], energy[:k]
    return out_f0, out_e


def prosody_turns(config, split: str, codec) -> ProsodyTurns:
  """Tokens of ``split`` for the codec ``codec`` (a ``CodecHandle``)."""
  stats = ensure_stats(config, codec.directory, codec.frame_rate)
  bins = pt.ProsodyBins(config.model.prosody, stats)
  return ProsodyTurns(bins, contour_cache(config, split, codec.directory,
                                          codec.frame_rate))
