"""Reading audio files for the codec command line, with the codec's own policy.

``csm_jax.audio.io.load_audio`` rejects anything a training corpus should
not hold. A codec user asks a narrower question ("can this be encoded?"), so
here:

* stereo / multichannel: averaged to mono (by ``load_audio``);
* any sample rate (8, 16, 44.1, 48 kHz, ...): resampled with soxr;
* shorter than one frame, or not a whole number of frames: encoded anyway,
  the codec zero-pads the end to whole frames (as training crops do);
* clipped: encoded as it is, with a warning (the codec reproduces the clip);
* all-silent: encoded (silence has codes too), but ``evaluate`` refuses it
  because SI-SDR and the relative spectral distances are undefined for a zero
  reference;
* missing, zero-byte, corrupt or non-audio files, zero frames and NaN/Inf
  samples: ``FileNotFoundError`` or ``AudioError`` naming the file and the
  reason, raised on the host before anything reaches JAX.
"""

from __future__ import annotations

import sys

import numpy as np

from csm_jax.audio.io import AudioError, load_audio

# Reasons ``load_audio`` raises that the codec can still encode faithfully.
_TOLERATED = ("silent", "clipped")


def read_audio(path: str, sample_rate: int, *,
               allow_silent: bool = True) -> np.ndarray:
  """1-D float32 mono audio at ``sample_rate`` (see module docstring)."""
  try:
    # min_seconds=0: short clips are padded by the codec, not rejected.
    return load_audio(path, sample_rate, min_seconds=0.0)
  except AudioError as e:
    if e.reason not in _TOLERATED or (e.reason == "silent"
                                      and not allow_silent):
      raise
    # Validation order is non_finite, too_short, silent, clipped: a tolerated
    # reason means the file decoded and holds only finite samples.
    print(f"warning: {e}; encoding it anyway", file=sys.stderr)
    return load_audio(path, sample_rate, check=False)


def check_codes(codes: np.ndarray, path: str) -> np.ndarray:
  """(frames, levels) or (batch, frames, levels) integer codes from a .npy,
  as (batch, frames, levels); the range is checked later against the codec."""
  c = np.asarray(codes)
  if c.ndim == 2:
    c = c[None]
  if c.ndim != 3 or c.shape[1] == 0:
    raise ValueError(f"{path}: codes must be (frames, levels) or (batch, "
                     f"frames, levels) with at least one frame, got shape "
                     f"{np.asarray(codes).shape}")
  if not np.issubdtype(c.dtype, np.integer):
    raise ValueError(f"{path}: codes must be integers, got {c.dtype}")
  return c


def load_codes(path: str) -> np.ndarray:
  """Codes written by ``encode`` (np.save); a non-.npy file is an error."""
  try:
    codes = np.load(path, allow_pickle=False)
  except FileNotFoundError:
    raise
  except (ValueError, OSError, EOFError) as e:
    raise ValueError(f"{path}: not a .npy array of codes ({e})") from e
  return check_codes(codes, path)
