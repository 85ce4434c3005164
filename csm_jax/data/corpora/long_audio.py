"""Long recordings read block by block: CTC frames, energy, speech regions.

``scan`` decodes a file in blocks (soundfile), downmixes and resamples
each block as a stream (soxr), and keeps only what the later stages need:
the level of every 10 ms frame and the CTC log-probabilities of the whole
recording. The acoustic model sees fixed windows (``WINDOW_S``) that
overlap by ``CONTEXT_S`` on each side; only each window's middle is kept,
so every frame was computed with at least that much context around it
and an hour-long file is never held as samples: memory is a few windows
plus ~21 MB of log-probabilities per hour (29 symbols at 50 Hz).

Speech is found by an energy detector: a frame is speech when its level
is ``margin`` above the recording's noise floor (the 10th percentile of
frame levels), and gaps shorter than ``min_pause_s`` are bridged. It is
used to cut the recording into alignment segments at pauses and to
report audio that no transcript word was aligned to; turn boundaries come
from the alignment, refined to the nearest energy edge.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Protocol, Sequence

import numpy as np
import soundfile as sf
import soxr

FRAME_S = 0.01           # energy frames
BLOCK_S = 8.0            # decoded at a time
WINDOW_S = 24.0          # acoustic model input
CONTEXT_S = 3.0          # discarded at each side of a window
_FLOOR_DB = -100.0


class CTCModel(Protocol):
  """What scanning needs of an aligner (``ctc_align.Aligner``)."""

  sample_rate: int
  seconds_per_frame: float

  def log_probs(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    ...


@dataclasses.dataclass
class Scan:
  """What one pass over a recording keeps."""
  duration_s: float
  energy_db: np.ndarray        # (frames,) dBFS of every FRAME_S frame
  log_probs: np.ndarray        # (ctc frames, symbols)
  seconds_per_frame: float
  non_finite: int = 0          # NaN/inf samples read as silence


def blocks(path: str, sample_rate: int, block_s: float = BLOCK_S
           ) -> Iterator[np.ndarray]:
  """float32 mono blocks of ``path`` at ``sample_rate``, decoded in turn.

  Raises soundfile's errors for a file that stops decoding midway.
  """
  with sf.SoundFile(path) as f:
    rate = f.samplerate
    stream = (None if rate == sample_rate else soxr.ResampleStream(
        rate, sample_rate, 1, dtype="float32", quality="HQ"))
    size = max(1, int(block_s * rate))
    while True:
      data = f.read(size, dtype="float32", always_2d=True)
      last = data.shape[0] < size
      mono = np.ascontiguousarray(data.mean(axis=1), np.float32)
      out = mono if stream is None else stream.resample_chunk(mono,
                                                              last=last)
      if out.size:
        yield out
      if last:
        return


class _Windows:
  """Cuts a sample stream into overlapping windows and stitches the model's
  frames of each window's middle into one sequence."""

  def __init__(self, model: CTCModel, batch: int):
    self.model, self.batch = model, batch
    spf = float(model.seconds_per_frame)
    sr = int(model.sample_rate)
    # The hop and context are whole CTC frames, so every window's middle
    # starts exactly on the global frame grid.
    self.hop_frames = max(1, int(round((WINDOW_S - 2 * CONTEXT_S) / spf)))
    self.ctx_frames = int(round(CONTEXT_S / spf))
    self.hop = int(round(self.hop_frames * spf * sr))
    self.ctx = int(round(self.ctx_frames * spf * sr))
    self.buf = np.zeros(0, np.float32)
    self.buf_start = 0          # absolute index of buf[0]
    self.k = 0                  # next window
    self.pending: list[tuple[np.ndarray, int, bool]] = []
    self.frames: list[np.ndarray] = []

  def push(self, x: np.ndarray) -> None:
    self.buf = np.concatenate([self.buf, x])
    while self.buf_start + self.buf.size >= (self.k + 1) * self.hop + self.ctx:
      self._emit(last=False)

  def _emit(self, last: bool) -> None:
    lo = max(0, self.k * self.hop - self.ctx)
    hi = (self.k + 1) * self.hop + self.ctx
    audio = self.buf[lo - self.buf_start: hi - self.buf_start]
    # Frames of the window's middle start this many frames into it.
    skip = 0 if self.k == 0 else self.ctx_frames
    self.pending.append((audio.copy(), skip, last))
    self.k += 1
    drop = max(0, self.k * self.hop - self.ctx) - self.buf_start
    if drop > 0:
      self.buf, self.buf_start = self.buf[drop:], self.buf_start + drop
    if len(self.pending) >= self.batch or last:
      self._run()

  def _run(self) -> None:
    if not self.pending:
      return
    outs = self.model.log_probs([a for a, _, _ in self.pending])
    for (_, skip, last), lp in zip(self.pending, outs):
      lp = np.asarray(lp, np.float32)
      self.frames.append(lp[skip:] if last else
                         lp[skip:skip + self.hop_frames])
    self.pending = []

  def finish(self, total: int) -> np.ndarray:
    # The rest of the stream, as one last window (maybe shorter).
    if total > self.k * self.hop or self.k == 0:
      self._emit(last=True)
    self._run()
    lp = np.concatenate(self.frames) if self.frames else np.zeros((0, 1))
    n = int(np.ceil(total / self.model.sample_rate
                    / self.model.seconds_per_frame))
    return lp[:max(n, 1)]


def scan(path: str, model: CTCModel, batch: int = 4) -> Scan:
  """One streaming pass over ``path``: energy frames and CTC frames."""
  sr = int(model.sample_rate)
  hop = int(round(FRAME_S * sr))
  windows = _Windows(model, batch)
  energy, rest, total, bad = [], np.zeros(0, np.float32), 0, 0
  for x in blocks(path, sr):
    finite = np.isfinite(x)
    if not finite.all():
      bad += int((~finite).sum())
      x = np.where(finite, x, 0.0).astype(np.float32)
    total += x.size
    windows.push(x)
    y = np.concatenate([rest, x])
    n = y.size // hop
    power = np.mean(np.square(y[:n * hop].reshape(n, hop), dtype=np.float64),
                    axis=1)
    energy.append(10 * np.log10(power + 1e-10))
    rest = y[n * hop:]
  lp = windows.finish(total)
  e = (np.concatenate(energy) if energy else np.zeros(0)).astype(np.float32)
  return Scan(total / sr, np.maximum(e, _FLOOR_DB), lp,
              float(model.seconds_per_frame), bad)


def speech_threshold(energy_db: np.ndarray, margin_db: float = 8.0) -> float:
  """Level (dBFS) above which a frame counts as speech.

  The floor is the 10th percentile of frame levels (the pauses, with any
  background under them); the threshold sits ``margin_db`` above it, or a
  third of the way up to the loud frames (95th percentile) when that is
  more, so a steady background bed does not count as speech.
  """
  if energy_db.size == 0:
    return 0.0
  floor = float(np.percentile(energy_db, 10))
  loud = float(np.percentile(energy_db, 95))
  return max(floor + margin_db, floor + (loud - floor) / 3)


def speech_regions(energy_db: np.ndarray, threshold: float,
                   min_pause_s: float = 0.2, min_speech_s: float = 0.1
                   ) -> list[tuple[float, float]]:
  """(start, end) seconds of the stretches above ``threshold``."""
  above = np.concatenate([[False], energy_db > threshold, [False]])
  edges = np.flatnonzero(np.diff(above.astype(np.int8)))
  regions: list[list[float]] = []
  for a, b in zip(edges[::2], edges[1::2]):
    s, e = a * FRAME_S, b * FRAME_S
    if regions and s - regions[-1][1] < min_pause_s:
      regions[-1][1] = e
    else:
      regions.append([s, e])
  return [(s, e) for s, e in regions if e - s >= min_speech_s]


def alignment_segments(regions: Sequence[tuple[float, float]],
                       duration_s: float, energy_db: np.ndarray,
                       target_s: float = 20.0, max_s: float = 40.0,
                       min_pause_s: float = 0.25
                       ) -> list[tuple[float, float]]:
  """The recording cut into segments of about ``target_s`` for alignment.

  Cuts fall in the middle of pauses of at least ``min_pause_s`` once a
  segment reaches ``target_s``; a stretch with no such pause is cut at its
  quietest 10 ms frame by ``max_s``. Segments tile the whole recording.
  """
  pauses = [(e0 + s1) / 2 for (_, e0), (s1, _) in zip(regions, regions[1:])
            if s1 - e0 >= min_pause_s]
  cuts, start = [], 0.0
  for mid in pauses + [duration_s]:
    while mid - start > max_s:
      lo, hi = int((start + target_s) / FRAME_S), int((start + max_s)
                                                       / FRAME_S)
      seg = energy_db[lo:hi]
      cut = (lo + int(np.argmin(seg))) * FRAME_S if seg.size else start + max_s
      cuts.append(cut)
      start = cut
    if mid - start >= target_s and mid < duration_s:
      cuts.append(mid)
      start = mid
  bounds = [0.0] + cuts + [duration_s]
  return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def refine_edge(energy_db: np.ndarray, t: float, threshold: float,
                direction: int, limit_s: float, stop: float) -> float:
  """Moves a turn's edge at ``t`` outward (``direction`` -1: earlier, +1:
  later) while the frames stay above ``threshold``, at most ``limit_s``
  and never past ``stop``: CTC places a word's first and last symbols
  somewhere inside its sound, the level shows where the sound begins."""
  i = int(round(t / FRAME_S))
  n = energy_db.size
  steps = int(round(limit_s / FRAME_S))
  best = t
  gap = 0
  for k in range(1, steps + 1):
    # The edge at t lies between frames i - 1 and i.
    j = i - k if direction < 0 else i + k - 1
    if not 0 <= j < n:
      break
    edge = (j if direction < 0 else j + 1) * FRAME_S
    if (direction < 0 and edge < stop) or (direction > 0 and edge > stop):
      break
    if energy_db[j] > threshold:
      best, gap = edge, 0
    else:
      gap += 1
      if gap > 3:      # 30 ms below the threshold: the sound has ended
        break
  return best
