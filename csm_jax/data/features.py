"""Per-turn prosody and semantic features.

Prosody (``prosody``): F0 comes from librosa's probabilistic YIN (``pyin``)
on 16 kHz audio at a coarse 40 ms hop (frame 64 ms). pyin is used rather than
plain ``yin`` because its voicing decision is needed for the voiced ratio and
to keep unvoiced frames out of the F0 statistics. At librosa's defaults
(20 ms hop, 0.1-semitone bins) it runs at ~0.4x real time on one core here;
at a 40 ms hop and 0.2-semitone bins ~50x, which is what makes corpus builds
affordable (the coarse hop still resolves syllable-level contours and 0.2
semitone is far below the differences the features describe).
Fields (``PROSODY_FIELDS``): mean F0 (Hz) and its log in semitones re 100 Hz,
F0 standard deviation and 5-95 % range in semitones, F0 slope in semitones per
second (least squares over voiced frames), voiced ratio, gated RMS level in
dBFS, duration, and speaking rate in words and in syllables per second
(syllables counted from vowel groups of the transcript).

Semantics (``semantic_vector``): a fixed-size (128) embedding of the
transcript that needs no model, no download and no fitting. Each word (crudely
stemmed) and each word bigram is hashed with keyed BLAKE2b into a
pseudo-random vector of 128 values in [-1, 1); the text's vector is the
weighted sum (function words down-weighted, bigrams at half weight),
L2-normalized. This is a random projection of the hashed bag of n-grams: cosine
similarity approximates n-gram overlap, it is identical on every machine and
for every corpus size (an LSA fit would change with the corpus and would have
to be stored and versioned with it), and it costs microseconds per turn.
"""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np

from csm_jax.audio import io as audio_lib
from csm_jax.audio import librosa_safe

F0_SR = 16000
F0_HOP = 640          # 40 ms
F0_FRAME = 1024       # 64 ms; >= 2 periods of FMIN
F0_MIN, F0_MAX = 50.0, 600.0
F0_RESOLUTION = 0.2   # semitones per pitch bin

PROSODY_FIELDS = ("f0_mean_hz", "f0_mean_st", "f0_std_st", "f0_range_st",
                  "f0_slope_st_per_s", "voiced_ratio", "rms_db", "duration_s",
                  "words_per_s", "syllables_per_s")
SEMANTIC_DIM = 128

_STOP = frozenset("""a an the and or but so of to in on at by for with from is
are was were be been am i you we they he she it my your our their this that
those these do did does have has had will would could should can might must
not no yes oh um uh mm well just""".split())


def _pyin(librosa, y: np.ndarray):
  return librosa.pyin(y, fmin=F0_MIN, fmax=F0_MAX, sr=F0_SR,
                      frame_length=F0_FRAME, hop_length=F0_HOP,
                      resolution=F0_RESOLUTION)


def _warm_pyin(librosa) -> None:
  t = np.arange(F0_SR // 4, dtype=np.float32) / F0_SR
  _pyin(librosa, (0.3 * np.sin(2 * np.pi * 150.0 * t)).astype(np.float32))


def f0_track(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
  """(f0 Hz with NaN where unvoiced, voiced flags), one per 40 ms frame."""
  librosa = librosa_safe.librosa("pyin", _warm_pyin)
  y = audio_lib.resample(np.asarray(x, np.float32), sr, F0_SR)
  if y.size < F0_FRAME:
    y = np.pad(y, (0, F0_FRAME - y.size))
  f0, voiced, _ = _pyin(librosa, y)
  return f0.astype(np.float32), voiced.astype(bool)


def count_syllables(text: str) -> int:
  """Vowel groups per word, at least one per word ("table" -> 2)."""
  n = 0
  for w in re.findall(r"[a-z']+", text.lower()):
    groups = len(re.findall(r"[aeiouy]+", w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and groups > 1:
      groups -= 1   # silent final e: "make", "stone"
    n += max(1, groups)
  return n


def prosody(x: np.ndarray, sr: int, text: str = "") -> dict[str, float]:
  """Prosodic summary of one turn; see module docstring for the fields."""
  x = np.asarray(x)
  if x.dtype == np.int16:
    x = audio_lib.from_int16(x)
  duration = x.shape[0] / sr
  f0, voiced = f0_track(x, sr)
  ok = voiced & np.isfinite(f0)
  out = dict.fromkeys(PROSODY_FIELDS, 0.0)
  out["voiced_ratio"] = float(ok.mean()) if ok.size else 0.0
  if ok.sum() >= 2:
    hz = f0[ok].astype(np.float64)
    st = 12 * np.log2(hz / 100.0)
    t = np.flatnonzero(ok) * F0_HOP / F0_SR
    out["f0_mean_hz"] = float(hz.mean())
    out["f0_mean_st"] = float(st.mean())
    out["f0_std_st"] = float(st.std())
    out["f0_range_st"] = float(np.percentile(st, 95) - np.percentile(st, 5))
    if np.ptp(t) > 0:
      out["f0_slope_st_per_s"] = float(np.polyfit(t, st, 1)[0])
  level = audio_lib.rms_db(x)
  out["rms_db"] = float(level) if np.isfinite(level) else -120.0
  out["duration_s"] = float(duration)
  if duration > 0:
    out["words_per_s"] = len(re.findall(r"[A-Za-z']+", text)) / duration
    out["syllables_per_s"] = count_syllables(text) / duration
  return out


def prosody_vector(feats: dict[str, float]) -> np.ndarray:
  return np.array([feats[k] for k in PROSODY_FIELDS], np.float32)


def _stem(w: str) -> str:
  for suf in ("ing", "ies", "ied", "ed", "es", "s"):
    if w.endswith(suf) and len(w) - len(suf) >= 3:
      return w[: -len(suf)] + ("y" if suf in ("ies", "ied") else "")
  return w


@functools.lru_cache(maxsize=200_000)
def _ngram_vector(gram: str, dim: int) -> np.ndarray:
  # BLAKE2b digests are at most 64 bytes: chain keyed digests for more.
  chunks = [hashlib.blake2b(gram.encode("utf-8"), digest_size=64,
                            key=b"csm-jax-semantic-v1/%d" % i).digest()
            for i in range((dim + 63) // 64)]
  raw = b"".join(chunks)[:dim]
  return np.frombuffer(raw, np.int8).astype(np.float32) / 128.0


def semantic_vector(text: str, dim: int = SEMANTIC_DIM) -> np.ndarray:
  """Unit-norm hashed n-gram projection of ``text`` (zeros for no words)."""
  if dim < 1:
    raise ValueError(f"semantic dim must be positive, got {dim}")
  toks = [_stem(w) for w in re.findall(r"[a-z']+", text.lower())]
  v = np.zeros(dim, np.float32)
  for i, w in enumerate(toks):
    v += (0.2 if w in _STOP else 1.0) * _ngram_vector("1:" + w, dim)
    if i:
      v += 0.5 * _ngram_vector(f"2:{toks[i - 1]} {w}", dim)
  norm = float(np.linalg.norm(v))
  return v / norm if norm > 0 else v


def turn_features(x: np.ndarray, sr: int, text: str) -> dict[str, np.ndarray]:
  """Both feature sets of a turn, as the arrays the dataset stores."""
  return {"prosody": prosody_vector(prosody(x, sr, text)),
          "semantic": semantic_vector(text)}
