"""Who spoke which stretch of an untagged recording: embeddings, clusters.

When a transcript has no speaker tags, every stretch of aligned speech
(a sentence, or a run of words between pauses) gets a speaker embedding
and the stretches are clustered. The embedding is the aligner's own when it
offers one (``speaker_embeddings``: the corpus's speaker encoder, wired in
from the evaluation layer); otherwise ``voice_vector``, which needs no
model: MFCC means and spreads (timbre, formants) and the median and spread
of log F0 (pitch, from YIN), over the stretch's loud frames.

Clustering is agglomerative (Ward linkage; voice vectors are standardized
per dimension first, encoder embeddings used as they are). The
number of speakers is the manifest's ``num_speakers`` when given, else the
smallest count from 2 to ``max_speakers`` whose silhouette is within a
slack of the best (``VOICE_SLACK``/``ENCODER_SLACK``), or one speaker when
no split reaches ``MIN_SILHOUETTE``.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster import hierarchy

from csm_jax.audio import librosa_safe

N_MFCC = 20
MIN_SILHOUETTE = 0.3  # random data reaches ~0.25
# How far below the best silhouette a smaller speaker count may be and
# still win. Voice vectors of one speaker spread with mood (pitch, rate),
# so they get more slack than an encoder's embeddings, which were trained
# to ignore it (fitted on assembled recordings of the embedded corpus).
VOICE_SLACK = 0.05
ENCODER_SLACK = 0.01


def voice_vector(x: np.ndarray, sr: int) -> np.ndarray:
  """A model-free voice description of mono ``x`` (see module doc)."""
  librosa = librosa_safe.librosa()
  x = np.asarray(x, np.float32)
  if x.size < sr // 10:
    x = np.pad(x, (0, sr // 10 - x.size))
  hop = sr // 100
  mfcc = librosa.feature.mfcc(y=x, sr=sr, n_mfcc=N_MFCC, n_fft=512,
                              hop_length=hop, n_mels=40)
  level = mfcc[0]
  loud = level >= np.percentile(level, 40)
  m = mfcc[1:, loud] if loud.any() else mfcc[1:]
  f0 = librosa.yin(x, fmin=60.0, fmax=500.0, sr=sr, frame_length=1024,
                   hop_length=hop)
  n = min(f0.size, loud.size)
  voiced = np.log(f0[:n][loud[:n]]) if loud[:n].any() else np.log(f0)
  lo, med, hi = np.percentile(voiced, [20, 50, 80])
  return np.concatenate([m.mean(1), m.std(1), [med * 8.0, (hi - lo) * 8.0]]
                        ).astype(np.float32)


def standardize(vectors: np.ndarray) -> np.ndarray:
  """Voice vectors scaled per dimension across a recording's stretches,
  so MFCCs and pitch weigh alike. (An encoder's unit-length embeddings
  are clustered as they are: their geometry is what it was trained for.)"""
  x = np.asarray(vectors, np.float64)
  return (x - x.mean(0)) / np.maximum(x.std(0), 1e-6)


def _silhouette(x: np.ndarray, labels: np.ndarray) -> float:
  d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
  ks = np.unique(labels)
  if ks.size < 2:
    return -1.0
  s = np.zeros(len(x))
  for i in range(len(x)):
    same = labels == labels[i]
    if same.sum() <= 1:
      continue
    a = d[i, same].sum() / (same.sum() - 1)
    b = min(d[i, labels == k].mean() for k in ks if k != labels[i])
    s[i] = (b - a) / max(a, b, 1e-9)
  return float(s.mean())


def cluster(vectors: np.ndarray, num_speakers: int | None = None,
            max_speakers: int = 8, slack: float = VOICE_SLACK
            ) -> np.ndarray:
  """Cluster labels 0.. (numbered by first appearance) of the rows."""
  x = np.asarray(vectors, np.float64)
  n = len(x)
  if n <= 1 or num_speakers == 1:
    return np.zeros(n, np.int64)
  tree = hierarchy.linkage(x, method="ward")
  if num_speakers is not None:
    labels = hierarchy.fcluster(tree, t=min(num_speakers, n),
                                criterion="maxclust")
  else:
    cands = [hierarchy.fcluster(tree, t=k, criterion="maxclust")
             for k in range(2, min(max_speakers, n - 1) + 1)]
    scores = [_silhouette(x, c) for c in cands]
    labels = np.ones(n, np.int64)
    if scores and max(scores) >= MIN_SILHOUETTE:
      # The fewest speakers that separate almost as well as the best
      # count: one voice in two moods must not become two speakers.
      k = next(i for i, s in enumerate(scores)
               if s >= max(scores) - slack)
      labels = cands[k]
  order: dict[int, int] = {}
  return np.asarray([order.setdefault(int(v), len(order)) for v in labels],
                    np.int64)
