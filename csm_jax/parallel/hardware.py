"""What the devices can do: datasheet peaks, measured peaks, one timer.

``timed`` is the project's one timing helper (warm-up, then repeated timed
calls with their median, spread and best); ``timed_paired`` alternates two
workloads so that their ratio is measured under the same load. The peaks
it measures (matmul FLOP/s, memory bandwidth) are the references MFU and
the benchmarks' ratios are computed against, measured in the same run on
shared machines.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import jaxlib

# Dense bf16 peak per chip (FLOP/s), from the vendors' datasheets.
PEAK_FLOPS = {
    "h100": 989e12, "h200": 989e12, "a100": 312e12, "l4": 121e12,
    "tpu v4": 275e12, "tpu v5 lite": 197e12, "tpu v5e": 197e12,
    "tpu v5p": 459e12, "tpu v5": 459e12, "tpu v6 lite": 918e12,
    "tpu v6e": 918e12,
}


# XLA:CPU hands dots and elementwise fusions to YNNPACK by default. In a
# training step that makes each weight gradient's elementwise producer write
# its activations transposed for the library's matmul (the SwiGLU backward
# alone was a fifth of the debug step); with dots only, XLA's own loop
# emitters fuse the elementwise work and the debug step runs 15-30% faster
# (docs/speed.md). Decoding is unchanged within noise.
CPU_TRAINING_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=dot",)
TUNED_JAXLIB = "0.10."  # the releases these flags were measured on


def tune_cpu_for_training(environ=None) -> list[str]:
  """Adds ``CPU_TRAINING_FLAGS`` to ``XLA_FLAGS`` and returns those added.

  Call before anything initializes a JAX backend (XLA reads the flags
  once); it only affects the CPU backend. A flag whose name the user's
  ``XLA_FLAGS`` already sets is left as the user set it, and with a jaxlib
  other than ``TUNED_JAXLIB`` nothing is added.
  """
  if not jaxlib.__version__.startswith(TUNED_JAXLIB):
    return []  # an unknown XLA flag aborts the process: only where checked
  env = os.environ if environ is None else environ
  current = env.get("XLA_FLAGS", "")
  set_names = {f.split("=")[0] for f in current.split()}
  added = [f for f in CPU_TRAINING_FLAGS if f.split("=")[0] not in set_names]
  if added:
    env["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call over ``n`` repeats after warm-up."""

  median: float
  best: float
  spread: float  # (max - min) / median
  n: int

  @classmethod
  def of(cls, times) -> "Timing":
    med = statistics.median(times)
    return cls(median=med, best=min(times),
               spread=(max(times) - min(times)) / max(med, 1e-12),
               n=len(times))


def _seconds(fn: Callable[[], object]) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeats: int = 5,
          warmup: int = 1) -> Timing:
  """Times ``fn()`` (blocking on its result) ``repeats`` times after warm-up."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  return Timing.of([_seconds(fn) for _ in range(repeats)])


@dataclasses.dataclass(frozen=True)
class Paired:
  """Two workloads timed in alternation: each one's timing, and the median
  over rounds of ``other / base`` (seconds per call), the ratio of the two
  measured under the same load."""

  base: Timing
  other: Timing
  ratio: float
  ratios: tuple[float, ...]


def timed_paired(base: Callable[[], object], other: Callable[[], object],
                 rounds: int = 5) -> Paired:
  """Times ``base()`` and ``other()`` alternately for ``rounds`` rounds.

  On a shared machine the load changes over seconds: timed one after the
  other, two workloads see different loads and their ratio moves with it
  (tens of percent between runs here). Alternated call by call (which one
  goes first swapping every round), each round's pair sees about the same
  load, and the median of the rounds' ratios is steady.
  """
  a, b = [], []
  for r in range(rounds):
    if r % 2:
      b.append(_seconds(other))
      a.append(_seconds(base))
    else:
      a.append(_seconds(base))
      b.append(_seconds(other))
  ratios = tuple(y / max(x, 1e-12) for x, y in zip(a, b))
  return Paired(Timing.of(a), Timing.of(b), statistics.median(ratios), ratios)


def best_time(fn, arg, repeats: int = 5) -> float:
  """Fastest of ``repeats`` calls of ``fn(arg)``: the least disturbed by
  other work on a shared machine, which is what a peak should be."""
  return timed(lambda: fn(arg), repeats).best


@functools.lru_cache(maxsize=None)
def measured_matmul_peak(n: int = 1024, repeats: int = 5) -> float:
  """Best f32 matmul FLOP/s this backend reaches on one device."""
  a = jnp.ones((n, n), jnp.float32)
  return 2 * n ** 3 / best_time(jax.jit(lambda x: x @ x), a, repeats)


def measured_bandwidth(n_bytes: int = 1 << 30, repeats: int = 5) -> float:
  """Bytes/s of one device reading a large f32 array (best of repeats)."""
  x = jnp.ones((n_bytes // 4,), jnp.float32)
  return n_bytes / best_time(jax.jit(jnp.sum), x, repeats)


def measured_product_chain(shapes, rows, repeats: int = 15, passes: int = 1,
                           dtype=jnp.float32) -> dict[int, float]:
  """Seconds of ``passes`` passes of products ``(m, d_in) @ (d_in, d_out)``
  over ``shapes`` (each its own weight, the same weights on every pass),
  for every ``m`` in ``rows``: the best of ``repeats`` calls.

  Each product's input is scaled by a value of the previous output, so the
  products run one after another as a decoder's do. Comparing ``m`` rows
  with one shows what this machine's matrix kernels charge for extra rows
  over the same weights: the limit of batching and of verifying several
  drafted tokens in one pass. The best call is the least disturbed, as for
  the peaks above.
  """
  keys = jax.random.split(jax.random.key(0), len(shapes))
  ws = [0.01 * jax.random.normal(k, s, dtype) for k, s in zip(keys, shapes)]

  @jax.jit
  def chain(xs, ws):
    scale = jnp.ones((), dtype)
    for _ in range(passes):
      for x, w in zip(xs, ws):
        y = (x * scale) @ w
        scale = 1 + 1e-3 * y[0, 0]
    return scale

  out = {}
  for m in rows:
    xs = [jnp.ones((m, s[0]), dtype) for s in shapes]
    out[m] = timed(lambda xs=xs: chain(xs, ws), repeats).best
  return out


def measured_training_products(products, repeats: int = 5,
                               dtype=jnp.float32) -> float:
  """Seconds one training step's weight products take on their own.

  ``products``: (rows, d_in, d_out) of each forward product; each is timed
  with its two backward products (the input's and the weight's gradient),
  once per distinct shape (best of ``repeats``), and counted as often as it
  occurs. The FLOPs of ``products`` over this time are what this machine's
  matrix kernels reach at the step's shapes: a training step's ceiling
  there, below the square-matmul peak when the shapes are thin.
  """
  counts = collections.Counter(tuple(p) for p in products)

  @jax.jit
  def fwd_bwd(x, w, g):
    return x @ w, g @ w.T, x.T @ g

  total = 0.0
  for (r, k, o), count in counts.items():
    x, w, g = (jnp.ones(s, dtype) for s in ((r, k), (k, o), (r, o)))
    total += count * best_time(lambda a: fwd_bwd(*a), (x, w, g), repeats)
  return total


def datasheet_peak(device=None) -> float | None:
  kind = (device or jax.devices()[0]).device_kind.lower()
  return next((v for k, v in PEAK_FLOPS.items() if k in kind), None)


def _peak_record() -> str:
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(
      os.path.expanduser("~"), ".cache")
  return os.path.join(root, "csm_jax", "measured_peaks.json")


def best_seen_peak(measured: float, key: str,
                   record: str | None = None) -> float:
  """The higher of ``measured`` and the best peak this machine measured
  before under ``key``, which is then remembered.

  A measurement taken while another process shares the cores reads low, by
  up to the number of processes; an MFU against it reads high, over 100%
  on a 2-core host. The best measurement so far is the nearest to the true
  peak. A record that cannot be read or written only loses the memory.
  """
  record = record or _peak_record()
  try:
    with open(record, encoding="utf-8") as f:
      seen = json.load(f)
  except (OSError, ValueError):
    seen = {}
  if not isinstance(seen, dict):
    seen = {}
  before = float(seen.get(key, 0.0))
  if measured > before:
    seen[key] = measured
    try:
      os.makedirs(os.path.dirname(record), exist_ok=True)
      tmp = f"{record}.{os.getpid()}"
      with open(tmp, "w", encoding="utf-8") as f:
        json.dump(seen, f, indent=1)
      os.replace(tmp, record)
    except OSError:
      pass
  return max(measured, before)


def peak_flops_per_device(device=None) -> tuple[float, str]:
  """(peak FLOP/s, where it comes from): the datasheet, else the best f32
  matmul rate measured on this machine (``best_seen_peak``)."""
  device = device or jax.devices()[0]
  sheet = datasheet_peak(device)
  if sheet:
    return sheet, f"{device.device_kind} datasheet"
  key = (f"{device.platform}:{device.device_kind}:{os.cpu_count()} cores:"
         f"jax {jax.__version__}")
  return (best_seen_peak(measured_matmul_peak(), key),
          f"{device.device_kind} best measured f32 matmul")
