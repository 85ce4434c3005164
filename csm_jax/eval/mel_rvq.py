"""The floor any trained codec must beat: k-means RVQ of log-mel frames, Griffin-Lim out.

No network at all. Log-mel frames (80 bins, 100 Hz, window 4 hops) are stacked
``stack`` at a time into one vector per code frame (25 Hz by default), and
a residual VQ of ``levels`` x ``codebook_size`` is fitted by k-means on the
training split; decoding looks the codes up, sums the levels and inverts
the mel spectrogram with Griffin-Lim. At a trained codec's own levels x
codebook size and frame rate it has the same bit rate, so a codec that
does not beat it has not learned what its bits could carry.

``MelRVQ`` has the ``encode`` / ``decode`` / ``sample_rate`` of a
``CodecHandle``, so every evaluation that resynthesizes through a codec
takes it as it is. A fit is cached beside the corpus, keyed by the corpus
fingerprint and the shape.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from csm_jax.audio.librosa_safe import librosa as import_librosa

N_MELS, FRAMES_PER_SECOND = 80, 100
_FLOOR = 1e-5


@dataclasses.dataclass
class MelRVQ:
  """A fitted k-means mel RVQ (see module docstring)."""

  codebooks: np.ndarray        # (levels, codebook_size, stack * N_MELS)
  sample_rate: int = 16_000
  stack: int = 4
  griffin_lim_iters: int = 48

  @property
  def levels(self) -> int:
    return self.codebooks.shape[0]

  @property
  def hop(self) -> int:
    return mel_hop(self.sample_rate) * self.stack

  def _vectors(self, audio) -> np.ndarray:
    return stacked_log_mel(audio, self.sample_rate, self.stack)

  def encode(self, audio, n_levels: int | None = None) -> np.ndarray:
    """(samples,) -> (frames, n_levels) int32 codes, greedy per level."""
    r = self._vectors(np.asarray(audio, np.float32))
    codes = []
    for cb in self.codebooks[:n_levels or self.levels]:
      k = _nearest(r, cb)
      codes.append(k)
      r = r - cb[k]
    return np.stack(codes, -1).astype(np.int32)

  def decode(self, codes) -> np.ndarray:
    """(frames, n) codes -> audio by Griffin-Lim of the summed levels."""
    codes = np.asarray(codes)
    v = sum(self.codebooks[i][codes[:, i]] for i in range(codes.shape[1]))
    mel = np.exp(v.reshape(-1, N_MELS)).T
    lr = import_librosa()
    hop = mel_hop(self.sample_rate)
    mag = lr.feature.inverse.mel_to_stft(
        mel, sr=self.sample_rate, n_fft=4 * hop, power=1.0, fmin=0.0,
        fmax=self.sample_rate / 2)
    # A fixed seed for Griffin-Lim's random initial phase: the same codes
    # always give the same audio, so reports reproduce.
    audio = lr.griffinlim(mag, n_iter=self.griffin_lim_iters,
                          hop_length=hop, random_state=0)
    return audio.astype(np.float32)


def mel_hop(sample_rate: int) -> int:
  return sample_rate // FRAMES_PER_SECOND


def log_mel(audio: np.ndarray, sample_rate: int) -> np.ndarray:
  """(frames, N_MELS) natural-log mel magnitudes at 100 frames a second."""
  lr = import_librosa()
  hop = mel_hop(sample_rate)
  mel = lr.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=4 * hop,
                                  hop_length=hop, n_mels=N_MELS, power=1.0,
                                  fmin=0.0, fmax=sample_rate / 2)
  return np.log(np.maximum(mel, _FLOOR)).T.astype(np.float32)


def stacked_log_mel(audio, sample_rate: int, stack: int) -> np.ndarray:
  """(code frames, stack * N_MELS): ``stack`` log-mel frames per vector,
  the last padded by repeating its final frame."""
  mel = log_mel(np.asarray(audio, np.float32), sample_rate)
  n = -(-len(mel) // stack) * stack
  mel = np.pad(mel, ((0, n - len(mel)), (0, 0)), mode="edge")
  return mel.reshape(-1, stack * N_MELS)


def _nearest(r: np.ndarray, cb: np.ndarray) -> np.ndarray:
  d = (cb ** 2).sum(-1)[None, :] - 2.0 * r @ cb.T
  return np.argmin(d, -1)


def fit(audios, levels: int, codebook_size: int, sample_rate: int = 16_000,
        stack: int = 4, seed: int = 0) -> MelRVQ:
  """Residual k-means (mini-batch) on the stacked log-mel vectors of
  ``audios``, one level at a time on the previous levels' residuals."""
  from sklearn.cluster import MiniBatchKMeans  # pylint: disable=g-import-not-at-top
  r = np.concatenate([stacked_log_mel(a, sample_rate, stack)
                      for a in audios])
  books = []
  for level in range(levels):
    km = MiniBatchKMeans(codebook_size, batch_size=4096, n_init=1,
                         random_state=seed + level, max_iter=50)
    km.fit(r)
    cb = km.cluster_centers_.astype(np.float32)
    books.append(cb)
    r = r - cb[_nearest(r, cb)]
  return MelRVQ(np.stack(books), sample_rate, stack)


def stack_for(sample_rate: int, frame_rate: float) -> int:
  """Mel frames per code frame of a codec at ``frame_rate``."""
  return max(1, int(round(FRAMES_PER_SECOND / frame_rate)))


def cached_fit(cache_dir: str, audios_fn, levels: int, codebook_size: int,
               sample_rate: int = 16_000, stack: int = 4) -> MelRVQ:
  """``fit`` on ``audios_fn()``, stored in ``cache_dir`` by shape."""
  path = os.path.join(cache_dir, f"mel_rvq_{levels}x{codebook_size}_"
                      f"{sample_rate}_{stack}.npz")
  if os.path.exists(path):
    with np.load(path) as f:
      return MelRVQ(f["codebooks"], sample_rate, stack)
  model = fit(audios_fn(), levels, codebook_size, sample_rate, stack)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, codebooks=model.codebooks)
  os.replace(tmp, path)
  return model


def corpus_floor(config, codec, log=None) -> MelRVQ:
  """The floor at ``codec``'s bit rate (its levels x codebook size and frame
  rate) fitted on ``config``'s training split, cached beside the corpus by
  its fingerprint."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.data.corpora import registry
  from csm_jax.eval.instruments import corpus as corpus_lib
  data_dir = registry.dataset_dir(config)
  cache = os.path.join(data_dir, "baselines",
                       corpus_lib.fingerprint(data_dir))
  clips = registry.CorpusClips(config, "train", codec.sample_rate)

  def audios():
    if log:
      log(f"fitting the k-means mel RVQ floor ({codec.levels} x "
          f"{codec.codebook_size}) on {len(clips)} training turns")
    return [clips[i] for i in range(len(clips))]
  return cached_fit(cache, audios, codec.levels, codec.codebook_size,
                    codec.sample_rate,
                    stack_for(codec.sample_rate, codec.frame_rate))
