"""Where training metrics go: TensorBoard events, a JSONL log and the console.

The console line shows step, loss, rate and ETA; TensorBoard gets every
scalar; ``metrics.jsonl`` keeps the same numbers for scripts and tests, one
row per step and kind: a run resumed from step S rewrites the file without
the rows after S, which it is about to log again. Hardware peaks (for MFU)
come from ``csm_jax.parallel.hardware``.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import numpy as np

def keep_rows_until(path: str, step: int) -> None:
  """Rewrites ``path`` keeping the rows of steps <= ``step``.

  A run that resumes from ``step`` logs the later steps again; a row cut
  short by a kill (no newline, not JSON) is dropped too.
  """
  if not os.path.exists(path):
    return
  kept, dropped = [], 0
  with open(path, encoding="utf-8", errors="replace") as f:
    for line in f:
      try:
        row = json.loads(line)
        ok = line.endswith("\n") and int(row["step"]) <= step
      except (ValueError, KeyError, TypeError):
        ok = False
      if ok:
        kept.append(line)
      else:
        dropped += 1
  if not dropped:
    return
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(tmp, path)


def _fmt_time(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}"


class MetricsReporter:
  """Writes scalars to TensorBoard + metrics.jsonl and prints progress."""

  def __init__(self, workdir: str, total_steps: int, enabled: bool = True,
               resume_step: int | None = None):
    self.enabled = enabled and jax.process_index() == 0
    self.total = total_steps
    self.writer = None
    self.jsonl = None
    self.path = os.path.join(workdir, "metrics.jsonl")
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      if resume_step is not None:
        keep_rows_until(self.path, resume_step)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.writer = SummaryWriter(os.path.join(workdir, "tb"))
      self.jsonl = open(self.path, "a")

  def scalars(self, step: int, metrics: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in metrics.items():
      v = float(np.asarray(v))
      row[prefix + k] = v
      self.writer.add_scalar(prefix + k, v, step)
    try:
      self.jsonl.write(json.dumps(row) + "\n")
      self.jsonl.flush()
    except OSError as e:  # a full disk: say which file
      raise OSError(e.errno, e.strerror, self.path) from e

  def image(self, step: int, tag: str, image_hwc: np.ndarray) -> None:
    if self.enabled:
      self.writer.add_image(tag, image_hwc, step, dataformats="HWC")

  def audio(self, step: int, tag: str, samples: np.ndarray, rate: int) -> None:
    if self.enabled:
      self.writer.add_audio(tag, samples, step, sample_rate=rate)

  def progress(self, step: int, metrics: dict, steps_per_s: float,
               items: tuple[str, float]) -> None:
    if not self.enabled:
      return
    loss = metrics.get("loss", metrics.get(next(
        (k for k in metrics if k.startswith("loss/")), ""), float("nan")))
    eta = (self.total - step) / steps_per_s if steps_per_s > 0 else float("inf")
    mfu = metrics.get("perf/mfu")
    parts = [f"step {step}/{self.total}", f"loss {float(loss):.4f}",
             f"{steps_per_s:.2f} steps/s",
             f"{items[1] * steps_per_s:,.0f} {items[0]}/s"]
    if mfu is not None:
      parts.append(f"MFU {100 * float(mfu):.1f}%")
    skipped = metrics.get("nonfinite/skipped_total")
    if skipped:
      parts.append(f"skipped {int(skipped)}")
    parts.append(f"ETA {_fmt_time(eta)}")
    print(" | ".join(parts), file=sys.stderr, flush=True)

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()
    if self.jsonl is not None:
      self.jsonl.close()
