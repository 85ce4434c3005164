"""Where training metrics go: TensorBoard events, a JSONL log and the console.

The console line shows step, loss, rate and ETA; TensorBoard gets every
scalar; ``metrics.jsonl`` keeps the same numbers for scripts and tests.
Hardware peak FLOP/s (for MFU) comes from a table of accelerators, or, on
CPU, from a short matmul measurement.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

# Dense bf16 peak per chip (FLOP/s), from the vendors' datasheets.
PEAK_FLOPS = {
    "h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12,
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12,
    "tpu v5p": 459e12, "tpu v5": 459e12, "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
}


def best_time(fn, arg, repeats: int = 5) -> float:
  """Fastest of ``repeats`` timed calls of a jitted ``fn(arg)`` (after warm-up);
  the minimum is the least disturbed by other work on a shared machine."""
  fn(arg).block_until_ready()
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn(arg).block_until_ready()
    best = min(best, time.perf_counter() - t0)
  return best


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 1024, repeats: int = 5) -> float:
  """Best f32 matmul FLOP/s this backend reaches on one device."""
  a = jnp.ones((n, n), jnp.float32)
  return 2 * n ** 3 / best_time(jax.jit(lambda x: x @ x), a, repeats)


def peak_flops_per_device(device=None) -> tuple[float, str]:
  device = device or jax.devices()[0]
  kind = device.device_kind.lower()
  for name, flops in PEAK_FLOPS.items():
    if name in kind:
      return flops, f"{device.device_kind} datasheet"
  return measured_matmul_peak(), f"{device.device_kind} measured f32 matmul"


def _fmt_time(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}:{m:02d}:{s:02d}"


class MetricsReporter:
  """Writes scalars to TensorBoard + metrics.jsonl and prints progress."""

  def __init__(self, workdir: str, total_steps: int, enabled: bool = True):
    self.enabled = enabled and jax.process_index() == 0
    self.total = total_steps
    self.writer = None
    self.jsonl = None
    if self.enabled:
      os.makedirs(workdir, exist_ok=True)
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.writer = SummaryWriter(os.path.join(workdir, "tb"))
      self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")

  def scalars(self, step: int, metrics: dict, prefix: str = "") -> None:
    if not self.enabled:
      return
    row = {"step": int(step)}
    for k, v in metrics.items():
      v = float(np.asarray(v))
      row[prefix + k] = v
      self.writer.add_scalar(prefix + k, v, step)
    self.jsonl.write(json.dumps(row) + "\n")
    self.jsonl.flush()

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


class _LibraryInfoFilter:
  """Drops INFO chatter of libraries (Orbax logs every save step by step)."""

  _NOISY = ("/orbax/", "/jax/_src/", "/grain/", "/etils/")

  def filter(self, record) -> bool:
    import logging as pylogging  # pylint: disable=g-import-not-at-top
    if record.levelno >= pylogging.WARNING:
      return True
    return not any(p in record.pathname for p in self._NOISY)


def quiet_library_logs() -> None:
  """Keeps our INFO lines and library warnings; hides library INFO lines."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
