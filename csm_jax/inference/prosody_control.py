"""User control of the prosody stream: sketches, emotion, pace, and the plot.

A *sketch* is the plan stage 1 follows instead of sampling: per codec frame
an F0 id and an energy id (either may be left free, ``None``). It comes
from a JSON file (``read_sketch``) or from a reference recording
(``sketch_from_wav``: the tokens' own extraction; its F0 is normalized by
the reference's own mean and spread, so the contour's shape is followed in
the target speaker's range). Sketch files::

  {"frame_rate": 25,                 # optional; default the codec's
   "f0_hz": [180, 185, null, ...],   # null or 0: unvoiced; or "f0_z":
                                     # speaker-normalized values, or
                                     # "f0_bin": the model's F0 ids
   "energy_db": [-22, -20, ...]}     # optional; or "energy_bin"

Contours at another frame rate are resampled to the codec's frames
(nearest frame). ``--pace`` is a rate multiplier: the sketch is resampled
in time by 1/pace (pace 1.25 speaks a 2 s sketch in 1.6 s); without a
sketch the generator first samples its own plan and then follows it
resampled (``Generator``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from csm_jax.audio.io import AudioError, load_audio
from csm_jax.data import features
from csm_jax.data import prosody_tokens as pt
from csm_jax.data.prosody_tokens import ProsodyError

MAX_SKETCH_FRAMES = 100_000


@dataclasses.dataclass
class Sketch:
  """Per-frame F0 ids and energy ids to follow (None: that stream free)."""

  f0: np.ndarray | None = None
  energy: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.f0 if self.f0 is not None else self.energy)

  def paced(self, pace: float) -> "Sketch":
    """The sketch spoken ``pace`` times as fast (nearest-frame resampling)."""
    if pace == 1.0:
      return self
    n = max(1, int(round(len(self) / pace)))
    src = np.minimum((np.arange(n) * pace).astype(np.int64), len(self) - 1)
    return Sketch(None if self.f0 is None else self.f0[src],
                  None if self.energy is None else self.energy[src])


def check_pace(pace: float) -> float:
  if not (math.isfinite(pace) and 0.25 <= pace <= 4.0):
    raise ProsodyError(f"--pace={pace}: a rate multiplier in [0.25, 4]")
  return float(pace)


def _resample(values: np.ndarray, rate: float, frame_rate: float
              ) -> np.ndarray:
  if abs(rate - frame_rate) < 1e-9:
    return values
  n = max(1, int(round(len(values) * frame_rate / rate)))
  src = np.minimum(np.round((np.arange(n) + 0.5) * rate / frame_rate - 0.5),
                   len(values) - 1).astype(np.int64)
  return values[np.maximum(src, 0)]


def _numbers(raw, where: str, allow_null: bool) -> np.ndarray:
  if not isinstance(raw, list) or not raw:
    raise ProsodyError(f"{where}: must be a non-empty list of numbers")
  if len(raw) > MAX_SKETCH_FRAMES:
    raise ProsodyError(f"{where}: {len(raw)} values, more than the "
                       f"{MAX_SKETCH_FRAMES} a sketch may hold")
  out = np.empty(len(raw), np.float64)
  for i, v in enumerate(raw):
    if v is None and allow_null:
      out[i] = np.nan
    elif isinstance(v, bool) or not isinstance(v, (int, float)) or \
        not math.isfinite(v):
      raise ProsodyError(f"{where}[{i}]: {v!r} is not a finite number"
                         + (" or null" if allow_null else ""))
    else:
      out[i] = float(v)
  return out


_F0_KEYS = ("f0_hz", "f0_z", "f0_bin")
_ENERGY_KEYS = ("energy_db", "energy_bin")


@dataclasses.dataclass
class SketchFields:
  """A sketch file's contours, checked, before any binning."""

  rate: float
  f0_key: str | None
  f0: np.ndarray | None         # NaN: unvoiced (f0_hz, f0_z, f0_bin)
  energy_key: str | None
  energy: np.ndarray | None


def sketch_fields(raw, where: str = "--prosody") -> SketchFields:
  """Checks a sketch file's JSON (see the module docstring) without the
  model: its fields, numbers, ranges and that both contours have the same
  length. ``parse_sketch`` then bins it; this runs before the model loads.
  """
  if not isinstance(raw, dict):
    raise ProsodyError(f"{where}: expected a JSON object with 'f0_hz', "
                       f"'f0_z' or 'f0_bin' and/or 'energy_db'/'energy_bin'")
  known = {"frame_rate", *_F0_KEYS, *_ENERGY_KEYS}
  unknown = sorted(set(raw) - known)
  if unknown:
    raise ProsodyError(f"{where}: unknown field(s) {unknown}; known: "
                       f"{sorted(known)}")
  rate = raw.get("frame_rate", 0.0)
  if "frame_rate" in raw and (
      isinstance(rate, bool) or not isinstance(rate, (int, float))
      or not 0 < rate <= 1000):
    raise ProsodyError(f"{where}: 'frame_rate' must be a number of frames "
                       f"per second in (0, 1000], got {rate!r}")
  f0_keys = [k for k in _F0_KEYS if k in raw]
  e_keys = [k for k in _ENERGY_KEYS if k in raw]
  if len(f0_keys) > 1 or len(e_keys) > 1:
    raise ProsodyError(f"{where}: give at most one of {_F0_KEYS} and one of "
                       f"{_ENERGY_KEYS}")
  if not f0_keys and not e_keys:
    raise ProsodyError(f"{where}: no contour: give one of {_F0_KEYS} and/or "
                       f"one of {_ENERGY_KEYS}")
  f0 = energy = None
  f0_key = f0_keys[0] if f0_keys else None
  e_key = e_keys[0] if e_keys else None
  if f0_key:
    f0 = _numbers(raw[f0_key], f"{where}: '{f0_key}'", allow_null=True)
    if f0_key == "f0_hz":
      f0 = np.where(f0 == 0, np.nan, f0)
      bad = np.flatnonzero(np.isfinite(f0) & ((f0 < features.F0_MIN)
                                              | (f0 > features.F0_MAX)))
      if len(bad):
        raise ProsodyError(
            f"{where}: 'f0_hz'[{bad[0]}] = {f0[bad[0]]:g} Hz is outside "
            f"[{features.F0_MIN:g}, {features.F0_MAX:g}] (null or 0: "
            "unvoiced)")
    elif f0_key == "f0_bin":
      ok = np.isfinite(f0)
      if np.any(ok & ((f0 < 0) | (f0 != np.round(f0)))):
        raise ProsodyError(f"{where}: 'f0_bin' values are integers >= 0 "
                           "(null: unvoiced)")
  if e_key:
    energy = _numbers(raw[e_key], f"{where}: '{e_key}'", allow_null=False)
    if e_key == "energy_db" and np.any((energy < -120) | (energy > 0)):
      raise ProsodyError(f"{where}: 'energy_db' values are levels in "
                         "dBFS in [-120, 0]")
    if e_key == "energy_bin" and np.any((energy < 0)
                                        | (energy != np.round(energy))):
      raise ProsodyError(f"{where}: 'energy_bin' values are integers >= 0")
  if f0 is not None and energy is not None and len(f0) != len(energy):
    raise ProsodyError(f"{where}: the F0 contour has {len(f0)} frames but "
                       f"the energy contour {len(energy)}; give both at the "
                       "same frames")
  return SketchFields(float(rate), f0_key, f0, e_key, energy)


def parse_sketch(raw, bins: pt.ProsodyBins, speaker: int, frame_rate: float,
                 where: str = "--prosody") -> Sketch:
  """A ``Sketch`` from a sketch file's JSON (see the module docstring)."""
  fields = sketch_fields(raw, where)
  rate = fields.rate or frame_rate
  f0 = energy = None
  if fields.f0 is not None:
    v = fields.f0
    if fields.f0_key == "f0_hz":
      ids = bins.f0_ids(np.log2(v), speaker)
    elif fields.f0_key == "f0_z":
      ids = bins.f0_ids_of_z(v)
    else:
      ok = np.isfinite(v)
      if np.any(ok & (v > bins.unvoiced)):
        raise ProsodyError(f"{where}: 'f0_bin' values are integers in [0, "
                           f"{bins.unvoiced}] ({bins.unvoiced} or null: "
                           "unvoiced)")
      ids = np.where(ok, v, bins.unvoiced).astype(np.int32)
    f0 = _resample(ids, rate, frame_rate).astype(np.int32)
  if fields.energy is not None:
    v = fields.energy
    if fields.energy_key == "energy_db":
      ids = bins.energy_ids(v)
    else:
      if np.any(v >= bins.energy_bins):
        raise ProsodyError(f"{where}: 'energy_bin' values are integers in "
                           f"[0, {bins.energy_bins - 1}]")
      ids = v.astype(np.int32)
    energy = _resample(ids, rate, frame_rate).astype(np.int32)
  return Sketch(f0, energy)


def read_sketch(path: str, bins: pt.ProsodyBins, speaker: int,
                frame_rate: float) -> Sketch:
  if not os.path.isfile(path):
    raise ProsodyError(f"--prosody={path}: no such sketch file")
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except json.JSONDecodeError as e:
    raise ProsodyError(f"{path}: the sketch is not valid JSON: {e.msg} at "
                       f"line {e.lineno} column {e.colno}") from None
  except UnicodeDecodeError as e:
    raise ProsodyError(f"{path}: the sketch is not UTF-8 text ({e.reason})"
                       ) from None
  return parse_sketch(raw, bins, speaker, frame_rate, where=path)


def contour_of_wav(path: str, sample_rate: int, frame_rate: float
                   ) -> pt.Contour:
  """The contour of a reference recording (``--prosody_from``)."""
  try:
    audio = load_audio(path, sample_rate)
  except FileNotFoundError:
    raise ProsodyError(f"--prosody_from={path}: no such audio file") from None
  except AudioError as e:
    raise ProsodyError(f"--prosody_from={path}: cannot be read as a "
                       f"reference ({e})") from None
  return pt.frame_contour(audio, sample_rate, frame_rate)


def sketch_from_contour(contour: pt.Contour, bins: pt.ProsodyBins,
                        where: str = "the reference") -> Sketch:
  """F0 normalized by the contour's own voiced frames; energy as it is."""
  v = contour.log_f0[np.isfinite(contour.log_f0)]
  if len(v) < 3:
    raise ProsodyError(f"{where}: fewer than 3 voiced frames; there is no "
                       "pitch contour to follow")
  z = (contour.log_f0 - v.mean()) / max(v.std(), pt.MIN_F0_STD)
  return Sketch(bins.f0_ids_of_z(z), bins.energy_ids(contour.energy_db))


def sketch_from_wav(path: str, bins: pt.ProsodyBins, sample_rate: int,
                    frame_rate: float) -> Sketch:
  return sketch_from_contour(contour_of_wav(path, sample_rate, frame_rate),
                             bins, where=f"--prosody_from={path}")


def follow_correlation(plan_f0: np.ndarray, realized_log_f0: np.ndarray,
                       bins: pt.ProsodyBins, speaker: int) -> float:
  """Pearson correlation of planned and realized log F0 over the frames
  voiced in both (NaN when fewer than 3)."""
  n = min(len(plan_f0), len(realized_log_f0))
  asked = bins.log_f0_of(np.asarray(plan_f0[:n]), speaker)
  got = np.asarray(realized_log_f0[:n], np.float64)
  ok = np.isfinite(asked) & np.isfinite(got)
  if ok.sum() < 3 or np.std(asked[ok]) == 0 or np.std(got[ok]) == 0:
    return float("nan")
  return float(np.corrcoef(asked[ok], got[ok])[0, 1])


def followed_frames(plan_f0: np.ndarray, realized_log_f0: np.ndarray,
                    bins: pt.ProsodyBins) -> int:
  """Frames voiced in both the plan and the audio (what the r is over)."""
  n = min(len(plan_f0), len(realized_log_f0))
  return int(np.sum((np.asarray(plan_f0[:n]) < bins.unvoiced)
                    & np.isfinite(np.asarray(realized_log_f0[:n]))))


def plot_contour(path: str, plan_f0: np.ndarray, realized: pt.Contour,
                 bins: pt.ProsodyBins, speaker: int, frame_rate: float,
                 title: str = "") -> str:
  """Writes the plan's F0 (bin centres) against the realized F0 as a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  asked = 2.0 ** bins.log_f0_of(np.asarray(plan_f0), speaker)
  got = 2.0 ** np.asarray(realized.log_f0, np.float64)
  fig, ax = plt.subplots(figsize=(8, 3.2))
  ax.step(np.arange(len(asked)) / frame_rate, asked, where="post",
          color="#4c72b0", lw=2, label="plan (stage 1, bin centres)")
  ax.plot(np.arange(len(got)) / frame_rate, got, "o-", ms=2.5, lw=1,
          color="#c44e52", label="realized (F0 of the generated audio)")
  r = follow_correlation(plan_f0, realized.log_f0, bins, speaker)
  ax.set_xlabel("seconds")
  ax.set_ylabel("F0 (Hz)")
  k = followed_frames(plan_f0, realized.log_f0, bins)
  ax.set_title((title + "  " if title else "")
               + (f"plan vs realized: r = {r:.2f} over {k} frames voiced in "
                  "both" if np.isfinite(r) else
                  f"plan vs realized: {k} frames voiced in both"))
  ax.legend(loc="upper right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def contour_png_path(wav_path: str) -> str:
  root, _ = os.path.splitext(wav_path)
  return root + ".prosody.png"
