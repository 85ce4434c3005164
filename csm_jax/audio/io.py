"""Loading, validating, normalizing and writing audio.

Everything that enters the codec or the corpus goes through ``load_audio`` or
``check_audio`` so that a broken file fails early with an ``AudioError`` that
names the file and one machine-readable ``reason``:

* ``"corrupt"``    the bytes are not a sound file soundfile/libsndfile can decode
* ``"empty"``      the file is zero bytes or holds zero sample frames
* ``"non_finite"`` some sample is NaN or +-inf (float WAV/FLAC can carry them)
* ``"too_short"``  shorter than ``min_seconds`` (default 0.08 s = one 12.5 Hz
                   codec frame: anything shorter cannot yield a single token)
* ``"silent"``     peak below -60 dBFS (|x| < 1e-3); such a clip carries no
                   speech and would be blown up to noise by loudness
                   normalization
* ``"clipped"``    more than 1 % of the samples sit at or beyond full scale
                   (|x| >= 0.999). A handful of full-scale peaks is harmless,
                   and int16 full scale is 32767/32768 = 0.99997, so the rule
                   counts samples rather than flagging any single peak; a
                   float file with |x| > 1 counts those samples as clipped.

Validation always runs on the samples as stored (before downmixing and
resampling), because resampling smears NaN over neighbours and can overshoot
or hide full-scale runs.
"""

from __future__ import annotations

import os
import tempfile
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from csm_jax.config.errors import UserError

PathLike = Union[str, os.PathLike]

REASONS = ("empty", "silent", "non_finite", "clipped", "corrupt", "too_short")

SILENCE_PEAK = 1e-3          # -60 dBFS
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.01
DEFAULT_MIN_SECONDS = 0.08   # one Mimi frame at 12.5 Hz


class AudioError(UserError, ValueError):
  """An audio file or array is unusable; ``reason`` is one of ``REASONS``."""

  def __init__(self, path: PathLike, reason: str, detail: str = ""):
    if reason not in REASONS:
      raise ValueError(f"unknown AudioError reason {reason!r}; "
                       f"expected one of {REASONS}")
    self.path = str(path)
    self.reason = reason
    self.detail = detail
    msg = f"{self.path}: audio is {reason}"
    if detail:
      msg += f" ({detail})"
    super().__init__(msg)


def check_audio(samples: np.ndarray, sr: int, path: PathLike = "<array>",
                min_seconds: float = DEFAULT_MIN_SECONDS) -> None:
  """Raises AudioError if ``samples`` (frames or frames x channels) is unusable.

  Integer arrays are judged on their full scale (int16 -> /32768 etc.).
  """
  x = np.asarray(samples)
  if sr <= 0:
    raise ValueError(f"{path}: sample rate must be positive, got {sr}")
  if x.ndim not in (1, 2):
    raise AudioError(path, "corrupt", f"expected 1-D or 2-D samples, got "
                     f"shape {x.shape}")
  if x.shape[0] == 0 or x.size == 0:
    raise AudioError(path, "empty", "zero sample frames")
  x = _as_float(x)
  finite = np.isfinite(x)
  if not finite.all():
    raise AudioError(path, "non_finite",
                     f"{int((~finite).sum())} of {x.size} samples are NaN/inf")
  seconds = x.shape[0] / sr
  if seconds < min_seconds:
    raise AudioError(path, "too_short",
                     f"{seconds:.3f} s < minimum {min_seconds:.3f} s")
  peak = float(np.max(np.abs(x)))
  if peak < SILENCE_PEAK:
    raise AudioError(path, "silent", f"peak {peak:.2e} below {SILENCE_PEAK:g}")
  clipped = float(np.mean(np.abs(x) >= CLIP_LEVEL))
  if clipped > CLIP_FRACTION:
    raise AudioError(path, "clipped",
                     f"{100 * clipped:.1f}% of samples at |x|>={CLIP_LEVEL}")


def load_audio(path: PathLike, sample_rate: int, *, check: bool = True,
               min_seconds: float = DEFAULT_MIN_SECONDS) -> np.ndarray:
  """Reads any soundfile-readable file as float32 mono at ``sample_rate``.

  Channels are averaged; resampling uses soxr (high quality). Raises
  FileNotFoundError for a missing path and AudioError for a bad file.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such audio file")
  if os.path.getsize(path) == 0:
    raise AudioError(path, "empty", "file has zero bytes")
  try:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise AudioError(path, "corrupt", str(e).strip()) from e
  if data.shape[0] == 0:
    raise AudioError(path, "empty", "zero sample frames")
  if check:
    check_audio(data, sr, path, min_seconds=min_seconds)
  mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
  return resample(mono, sr, sample_rate)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
  """float32 mono resampling with soxr; identity when the rates match."""
  x = np.ascontiguousarray(x, dtype=np.float32)
  if sr_in == sr_out:
    return x
  return soxr.resample(x, sr_in, sr_out, quality="HQ").astype(np.float32)


def rms_db(x: np.ndarray, gate_db: float = -50.0,
           frame: int = 1024) -> float:
  """Gated RMS level in dBFS: mean power over frames louder than ``gate_db``.

  Gating (as LUFS does, minus its K-weighting filter) keeps the pauses
  between words from dragging the level down, so a sparse utterance and a
  dense one normalize to the same perceived loudness.
  """
  x = _as_float(np.asarray(x)).reshape(-1)
  if x.size == 0:
    return -np.inf
  n = max(1, x.size // frame)
  frames = x[: n * frame].reshape(n, -1) if x.size >= frame else x[None, :]
  power = np.mean(frames.astype(np.float64) ** 2, axis=1)
  active = power[power > 10 ** (gate_db / 10)]
  if active.size == 0:
    return -np.inf
  return float(10 * np.log10(np.mean(active)))


def loudness_normalize(x: np.ndarray, target_db: float = -23.0, *,
                       peak_limit: float = 0.95,
                       path: PathLike = "<array>") -> np.ndarray:
  """Scales ``x`` so its gated RMS is ``target_db`` dBFS, never past the peak.

  If reaching the target would push the peak above ``peak_limit`` the gain is
  reduced to keep the peak there (no clipping is ever introduced). Raises
  AudioError("silent") when nothing is above the gate.
  """
  x = _as_float(np.asarray(x))
  level = rms_db(x)
  if not np.isfinite(level):
    raise AudioError(path, "silent", "no frame above the -50 dBFS gate")
  gain = 10 ** ((target_db - level) / 20)
  peak = float(np.max(np.abs(x)))
  if peak * gain > peak_limit:
    gain = peak_limit / peak
  return (x * gain).astype(np.float32)


def write_wav(path: PathLike, x: np.ndarray, sr: int,
              subtype: str = "PCM_16") -> None:
  """Writes mono/multichannel audio as WAV, atomically (temp file + rename).

  Float input is clipped to [-1, 1] before integer encoding; non-finite input
  raises AudioError rather than writing garbage.
  """
  path = os.fspath(path)
  x = np.asarray(x)
  if x.dtype.kind == "f" and not np.isfinite(x).all():
    raise AudioError(path, "non_finite", "refusing to write NaN/inf samples")
  if x.dtype.kind == "f" and subtype.startswith("PCM"):
    x = np.clip(x, -1.0, 1.0)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix=".wav", dir=directory)
  os.close(fd)
  try:
    sf.write(tmp, x, sr, subtype=subtype, format="WAV")
    # mkstemp makes the file 0600; a wav is an ordinary output, so it gets
    # the mode open() would give it under the process's umask.
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _umask() -> int:
  """The process's umask, read without changing it where Linux allows."""
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("Umask:"):
          return int(line.split()[1], 8)
  except (OSError, ValueError):
    pass
  mask = os.umask(0o022)  # elsewhere: set and restore at once
  os.umask(mask)
  return mask


def to_int16(x: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> int16 with rounding and saturation."""
  return np.clip(np.round(np.asarray(x, np.float32) * 32767.0),
                 -32768, 32767).astype(np.int16)


def from_int16(x: np.ndarray) -> np.ndarray:
  return np.asarray(x, np.float32) / 32768.0


def _as_float(x: np.ndarray) -> np.ndarray:
  if x.dtype.kind == "f":
    return x.astype(np.float32, copy=False)
  if x.dtype.kind in "iu":
    half = float(2 ** (8 * x.dtype.itemsize - 1))
    offset = half if x.dtype.kind == "u" else 0.0
    return ((x.astype(np.float64) - offset) / half).astype(np.float32)
  raise AudioError("<array>", "corrupt", f"unsupported dtype {x.dtype}")
