"""Prosody tokens per codec frame, and the style token per turn.

A turn's *contour* is, per codec frame, its log2 F0 (NaN where unvoiced)
and its energy (RMS level in dBFS over the frame's samples). F0 comes from
``features.f0_track`` (pyin, 40 ms hop); pyin frame t, centred at
``t * 40 ms``, belongs to codec frame ``floor(t * 40 ms * frame_rate)``. A
codec frame is voiced when at least half of its pyin frames are, with the
median of their log F0; a frame holding no pyin frame (codecs above 25 Hz)
takes the nearest one. At the debug codec's 25 Hz the two grids coincide.

Tokens (``ProsodyBins``):

- F0: the speaker-normalized log F0 ``z = (log2 f0 - mean) / std`` (the
  speaker's voiced frames of the training split) clipped to
  ``[-f0_range, f0_range]`` and cut into ``f0_bins`` equal bins; unvoiced
  frames take the extra id ``f0_bins``, so the voicing flag is
  ``id == f0_bins``.
- energy: bin 0 is silence (at most ``SILENCE_DB`` + 1 dB, where pauses and
  eSpeak's digital silence sit); the other ``energy_bins - 1`` bins have
  edges at the quantiles of the training split's non-silent frames, so each
  is used equally there.
- style, one per turn: an emotion class (the corpus's label where it has
  one, else a k-means cluster of per-turn prosody features) times an
  intensity bin: the turn's distance from its speaker's neutral mean in
  z-scored per-turn features (F0 level and range, level, syllable rate),
  cut at the quantiles of that emotion's training turns. Id ``emotion *
  intensity_bins + intensity``; ``style_classes * intensity_bins`` means
  unknown.

``ProsodyStats`` holds what binning needs from the training split; it is
stored as JSON beside the contour cache (``prosody_cache``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import numpy as np

from csm_jax.audio import io as audio_lib
from csm_jax.config.errors import UserError
from csm_jax.data import features

# Per-turn features that style and intensity are measured on (the
# acoustic correlates of emotion: pitch level and range, loudness, rate).
STYLE_FEATURES = ("f0_mean_st", "f0_std_st", "rms_db", "syllables_per_s")
_STYLE_INDEX = [features.PROSODY_FIELDS.index(f) for f in STYLE_FEATURES]
SILENCE_DB = -70.0
MIN_F0_STD = 0.05     # octaves (0.6 semitone): floor of a speaker's spread
PYIN_HOP_S = features.F0_HOP / features.F0_SR


class ProsodyError(UserError, ValueError):
  """A sketch, emotion, reference wav or stats file is unusable; names it."""


@dataclasses.dataclass
class Contour:
  """Per codec frame: log2 F0 (NaN where unvoiced) and level in dBFS."""

  log_f0: np.ndarray
  energy_db: np.ndarray

  @property
  def voiced(self) -> np.ndarray:
    return np.isfinite(self.log_f0)

  def __len__(self) -> int:
    return len(self.log_f0)


def n_frames_of(n_samples: int, sample_rate: int, frame_rate: float) -> int:
  return max(1, int(np.ceil(n_samples * frame_rate / sample_rate - 1e-9)))


def frame_energy(x: np.ndarray, sample_rate: int, frame_rate: float,
                 n_frames: int) -> np.ndarray:
  """RMS level (dBFS) of each codec frame's samples; past the end: silence."""
  x = np.asarray(x, np.float64).reshape(-1)
  edges = np.round(np.arange(n_frames + 1) * sample_rate / frame_rate)
  edges = np.clip(edges.astype(np.int64), 0, len(x))
  power = np.concatenate([[0.0], np.cumsum(x * x)])
  n = np.maximum(edges[1:] - edges[:-1], 1)
  mean = (power[edges[1:]] - power[edges[:-1]]) / n
  db = 10.0 * np.log10(mean + 1e-10)
  return np.maximum(db, SILENCE_DB).astype(np.float32)


def align_f0(f0: np.ndarray, voiced: np.ndarray, frame_rate: float,
             n_frames: int) -> np.ndarray:
  """pyin's 40 ms track onto codec frames (see the module docstring)."""
  f0 = np.asarray(f0, np.float64)
  ok = np.asarray(voiced, bool) & np.isfinite(f0) & (f0 > 0)
  log_f0 = np.where(ok, np.log2(np.where(ok, f0, 1.0)), np.nan)
  t = np.arange(len(f0)) * PYIN_HOP_S
  owner = np.floor(t * frame_rate + 1e-6).astype(np.int64)
  out = np.full((n_frames,), np.nan, np.float32)
  if not len(f0):
    return out
  for i in range(n_frames):
    sel = np.flatnonzero(owner == i)
    if not len(sel):
      centre = (i + 0.5) / frame_rate
      sel = [int(np.clip(round(centre / PYIN_HOP_S), 0, len(f0) - 1))]
    v = log_f0[sel]
    v = v[np.isfinite(v)]
    if 2 * len(v) >= len(sel) and len(v):
      out[i] = np.median(v)
  return out


def frame_contour(x: np.ndarray, sample_rate: int, frame_rate: float,
                  n_frames: int | None = None) -> Contour:
  """The contour of audio ``x`` on the codec's frame grid."""
  x = np.asarray(x)
  if x.dtype == np.int16:
    x = audio_lib.from_int16(x)
  x = np.asarray(x, np.float32).reshape(-1)
  n = n_frames or n_frames_of(len(x), sample_rate, frame_rate)
  f0, voiced = features.f0_track(x, sample_rate)
  return Contour(align_f0(f0, voiced, frame_rate, n),
                 frame_energy(x, sample_rate, frame_rate, n))


def style_features(prosody_vector: np.ndarray) -> np.ndarray:
  """The ``STYLE_FEATURES`` of a turn's stored prosody vector."""
  return np.asarray(prosody_vector, np.float64)[_STYLE_INDEX]


@dataclasses.dataclass
class ProsodyStats:
  """What binning needs from the training split (see module docstring)."""

  speakers: dict            # speaker id -> [mean, std] of log2 F0
  global_f0: list           # [mean, std] over all speakers
  energy_edges: list        # energy_bins - 1 ascending dB edges
  emotion_names: list       # style classes, in id order
  style_source: str         # "labels" or "clusters"
  feature_mean: list        # z-scoring of STYLE_FEATURES
  feature_std: list
  neutral: dict             # speaker id -> neutral mean (z-space)
  intensity_edges: dict     # emotion index -> intensity_bins - 1 edges
  centroids: list = dataclasses.field(default_factory=list)

  def speaker_f0(self, speaker: int) -> tuple[float, float]:
    mean, std = self.speakers.get(int(speaker), self.global_f0)
    return float(mean), float(std)

  def to_json(self) -> dict:
    d = dataclasses.asdict(self)
    for k in ("speakers", "neutral", "intensity_edges"):
      d[k] = {str(i): v for i, v in d[k].items()}
    return d

  @classmethod
  def from_json(cls, d: dict, where: str = "prosody stats") -> "ProsodyStats":
    try:
      d = dict(d)
      for k in ("speakers", "neutral", "intensity_edges"):
        d[k] = {int(i): v for i, v in d[k].items()}
      return cls(**d)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise ProsodyError(f"{where}: not a prosody stats file ({e})") from None

  def save(self, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(self.to_json(), f, indent=1)
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str) -> "ProsodyStats":
    try:
      with open(path) as f:
        return cls.from_json(json.load(f), path)
    except (OSError, json.JSONDecodeError) as e:
      raise ProsodyError(f"{path}: unreadable prosody stats ({e})") from None


class ProsodyBins:
  """Contours <-> tokens for one ``model.prosody`` config and its stats."""

  def __init__(self, spec, stats: ProsodyStats):
    self.f0_bins, self.f0_range = int(spec.f0_bins), float(spec.f0_range)
    self.energy_bins = int(spec.energy_bins)
    self.intensity_bins = int(spec.intensity_bins)
    self.style_classes = int(spec.style_classes)
    self.stats = stats
    if len(stats.energy_edges) != self.energy_bins - 1:
      raise ProsodyError(f"prosody stats have {len(stats.energy_edges) + 1} "
                         f"energy bins, the model {self.energy_bins}")
    if len(stats.emotion_names) > self.style_classes:
      raise ProsodyError(
          f"config.model.prosody.style_classes: {self.style_classes} but the "
          f"corpus has {len(stats.emotion_names)} emotion classes "
          f"({', '.join(stats.emotion_names)})")

  @property
  def unvoiced(self) -> int:
    return self.f0_bins

  @property
  def unknown_style(self) -> int:
    return self.style_classes * self.intensity_bins

  # -- F0 -------------------------------------------------------------------
  def z_of(self, log_f0: np.ndarray, speaker: int) -> np.ndarray:
    mean, std = self.stats.speaker_f0(speaker)
    return (np.asarray(log_f0, np.float64) - mean) / std

  def f0_ids_of_z(self, z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    r, n = self.f0_range, self.f0_bins
    ok = np.isfinite(z)
    b = np.floor((np.clip(np.where(ok, z, 0.0), -r, r) + r) / (2 * r) * n)
    return np.where(ok, np.clip(b, 0, n - 1), n).astype(np.int32)

  def f0_ids(self, log_f0: np.ndarray, speaker: int) -> np.ndarray:
    return self.f0_ids_of_z(self.z_of(log_f0, speaker))

  def z_centres(self, ids: np.ndarray) -> np.ndarray:
    """Bin centres in z (NaN for the unvoiced id)."""
    ids = np.asarray(ids)
    r, n = self.f0_range, self.f0_bins
    z = -r + (ids + 0.5) * 2 * r / n
    return np.where(ids < n, z, np.nan)

  def log_f0_of(self, ids: np.ndarray, speaker: int) -> np.ndarray:
    mean, std = self.stats.speaker_f0(speaker)
    return mean + std * self.z_centres(ids)

  # -- energy ---------------------------------------------------------------
  def energy_ids(self, energy_db: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.asarray(self.stats.energy_edges),
                           np.asarray(energy_db, np.float64),
                           side="right").astype(np.int32)

  def energy_centres(self, ids: np.ndarray) -> np.ndarray:
    """A representative level of each energy bin (midpoint of its edges)."""
    e = np.asarray(self.stats.energy_edges, np.float64)
    lo = np.concatenate([[2 * e[0] - e[1] if len(e) > 1 else e[0] - 10], e])
    hi = np.concatenate([e, [2 * e[-1] - e[-2] if len(e) > 1 else e[0] + 10]])
    return ((lo + hi) / 2)[np.asarray(ids)]

  def tokens(self, contour: Contour, speaker: int):
    """(f0 ids, energy ids) of a contour, one per codec frame."""
    return self.f0_ids(contour.log_f0, speaker), \
        self.energy_ids(contour.energy_db)

  # -- style ----------------------------------------------------------------
  def emotion_index(self, name: str) -> int:
    names = list(self.stats.emotion_names)
    if name not in names:
      raise ProsodyError(f"--emotion={name}: unknown emotion; the model "
                         f"knows {', '.join(names)}")
    return names.index(name)

  def intensity_bin(self, intensity: float) -> int:
    if not 0.0 <= intensity <= 1.0:
      raise ProsodyError(f"--intensity={intensity}: must be in [0, 1]")
    return int(min(self.intensity_bins - 1,
                   np.floor(intensity * self.intensity_bins)))

  def style_id(self, emotion: int, intensity_bin: int) -> int:
    return int(emotion) * self.intensity_bins + int(intensity_bin)

  def style_of(self, style_id: int) -> tuple[str, int] | None:
    """(emotion name, intensity bin) of a style id; None for unknown."""
    if style_id >= self.unknown_style:
      return None
    e, i = divmod(int(style_id), self.intensity_bins)
    names = self.stats.emotion_names
    return (names[e] if e < len(names) else f"class{e}"), i

  def turn_style(self, feats: np.ndarray, speaker: int, label: int) -> int:
    """The style id of a turn from its style features and label (-1: none)."""
    s = self.stats
    z = (np.asarray(feats, np.float64) - s.feature_mean) / s.feature_std
    if s.style_source == "clusters":
      label = int(np.argmin(np.sum((np.asarray(s.centroids) - z) ** 2, 1)))
    if label < 0 or label >= len(s.emotion_names):
      return self.unknown_style
    ref = np.asarray(s.neutral.get(int(speaker), np.zeros_like(z)))
    dist = float(np.linalg.norm(z - ref))
    edges = s.intensity_edges.get(int(label), [])
    return self.style_id(label, int(np.searchsorted(edges, dist)))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 50
           ) -> np.ndarray:
  """k centroids of rows ``x`` (k-means++ seeding, Lloyd iterations)."""
  x = np.asarray(x, np.float64)
  rng = np.random.default_rng(seed)
  k = min(k, len(x))
  c = [x[rng.integers(len(x))]]
  for _ in range(1, k):
    d = np.min(((x[:, None] - np.asarray(c)[None]) ** 2).sum(-1), axis=1)
    p = d / d.sum() if d.sum() > 0 else None
    c.append(x[rng.choice(len(x), p=p)])
  c = np.asarray(c)
  for _ in range(iters):
    assign = np.argmin(((x[:, None] - c[None]) ** 2).sum(-1), axis=1)
    new = np.asarray([x[assign == j].mean(0) if np.any(assign == j) else c[j]
                      for j in range(k)])
    if np.allclose(new, c):
      break
    c = new
  return c


def fit_stats(contours: Sequence[Contour], speakers: Sequence[int],
              style_feats: np.ndarray, labels: Sequence[int],
              label_names: Sequence[str] | None, spec,
              seed: int = 0) -> ProsodyStats:
  """``ProsodyStats`` of a training split (see the module docstring).

  ``labels`` are emotion class indices (-1 unknown) into ``label_names``;
  without names (or without any known label) the style classes are
  ``spec.style_classes`` k-means clusters of the per-turn features.
  """
  speakers = np.asarray(speakers, np.int64)
  per_spk, all_f0 = {}, []
  for c, s in zip(contours, speakers):
    v = c.log_f0[np.isfinite(c.log_f0)]
    per_spk.setdefault(int(s), []).append(v)
    all_f0.append(v)
  flat = np.concatenate(all_f0) if all_f0 else np.zeros(0)
  if len(flat) < 2:
    raise ProsodyError("the training split has no voiced frames: F0 "
                       "statistics cannot be computed")
  glob = [float(flat.mean()), float(max(flat.std(), MIN_F0_STD))]
  spk_stats = {}
  for s, parts in per_spk.items():
    v = np.concatenate(parts)
    spk_stats[s] = ([float(v.mean()), float(max(v.std(), MIN_F0_STD))]
                    if len(v) >= 20 else glob)
  energy = np.concatenate([c.energy_db for c in contours])
  silent = SILENCE_DB + 1.0
  sound = energy[energy > silent]
  if len(sound) < spec.energy_bins:
    raise ProsodyError("the training split has almost no audible frames: "
                       "energy bins cannot be placed")
  qs = np.arange(1, spec.energy_bins - 1) / (spec.energy_bins - 1)
  edges = np.concatenate([[silent], np.quantile(sound, qs)])
  # Strictly increasing, so no bin is empty by construction.
  edges = np.maximum.accumulate(edges + np.arange(len(edges)) * 1e-3)
  feats = np.asarray(style_feats, np.float64)
  mean, std = feats.mean(0), np.maximum(feats.std(0), 1e-6)
  z = (feats - mean) / std
  labels = np.asarray(labels, np.int64)
  use_labels = label_names is not None and np.any(labels >= 0)
  centroids = []
  if use_labels:
    names, source = list(label_names), "labels"
  else:
    centroids = kmeans(z, spec.style_classes, seed).tolist()
    labels = np.argmin(((z[:, None] - np.asarray(centroids)[None]) ** 2
                        ).sum(-1), axis=1)
    names, source = [f"cluster{j}" for j in range(len(centroids))], "clusters"
  neutral_idx = names.index("neutral") if "neutral" in names else -1
  neutral = {}
  for s in np.unique(speakers):
    mine = speakers == s
    calm = mine & (labels == neutral_idx)
    neutral[int(s)] = z[calm if calm.any() else mine].mean(0).tolist()
  dist = np.asarray([np.linalg.norm(z[i] - neutral[int(speakers[i])])
                     for i in range(len(z))])
  iq = np.arange(1, spec.intensity_bins) / spec.intensity_bins
  all_edges = np.quantile(dist, iq).tolist() if len(dist) else []
  intensity = {}
  for j in range(len(names)):
    d = dist[labels == j]
    intensity[j] = (np.quantile(d, iq).tolist()
                    if len(d) >= spec.intensity_bins else all_edges)
  return ProsodyStats(
      speakers=spk_stats, global_f0=glob,
      energy_edges=[float(e) for e in edges], emotion_names=names,
      style_source=source, feature_mean=mean.tolist(),
      feature_std=std.tolist(), neutral=neutral, intensity_edges=intensity,
      centroids=centroids)
