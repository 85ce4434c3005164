"""Training throughput: frames/s, achieved FLOP/s and the ratio to peak.

The peak is this machine's best f32 matmul rate measured in the same run
(on accelerators the datasheet bf16 peak is printed beside it), so the ratio
is comparable across noisy shared machines.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from csm_jax.model.loss import dense_products
from csm_jax.parallel.hardware import (datasheet_peak, measured_matmul_peak,
                                       measured_training_products)
from csm_jax.training.run import make_task
from csm_jax.training.trainer import Trainer


def bench_train(config, steps: int = 10, warmup: int = 2) -> dict:
  if config.data.source != "synthetic_tokens":
    # Same shapes and FLOPs as the corpus, without building corpus and codec.
    print("bench: timing on synthetic tokens in the config's frame layout")
    config = config.copy_and_resolve_references()
    config.data.source = "synthetic_tokens"
  # The machine's limit is the best it reaches: measured before and after
  # the timed steps, so one disturbed measurement does not set the ratio.
  peak = measured_matmul_peak(2048, repeats=10)
  with tempfile.TemporaryDirectory() as wd:
    tr = Trainer(config, wd, make_task(config))
    t0 = time.perf_counter()
    tr.compile()
    compile_s = time.perf_counter() - t0
    state = tr.builder.init(config.train.seed, tr.mesh)
    it = iter(tr.task.train_dataset(tr.local_batch, 0))
    batches = [tr._put(next(it)) for _ in range(min(steps, 4))]
    for i in range(warmup):
      state, m = tr.train_step(state, batches[i % len(batches)])
    jax.block_until_ready(state)
    times = []
    for i in range(steps):
      t = time.perf_counter()
      state, m = tr.train_step(state, batches[i % len(batches)])
      jax.block_until_ready(m)
      times.append(time.perf_counter() - t)
  step_s = statistics.median(times)
  flops = tr.task.flops_per_batch(tr.batch_size)
  unit, items = tr.task.items_per_batch(tr.batch_size)
  peak = max(peak, measured_matmul_peak(2048, repeats=10)) * jax.device_count()
  sheet = datasheet_peak()
  extra = {}
  if config.task == "csm" and jax.device_count() == 1:
    # The step's own weight products alone, at its shapes: how much of the
    # gap to the square-matmul peak is the shapes, how much the rest.
    products = dense_products(config, tr.batch_size)
    alone = measured_training_products(
        products, dtype=jnp.dtype(config.model.dtype))
    ceiling = 6.0 * sum(r * k * o for r, k, o in products) / alone
    extra = {"products_alone_flops_per_s": ceiling,
             "products_alone_ratio_to_peak": ceiling / peak,
             "ratio_to_products_alone": flops / step_s / ceiling}
  return {
      "params": tr.params, "devices": jax.device_count(),
      "compile_s": compile_s, "step_ms_median": 1e3 * step_s,
      f"{unit}_per_s": items / step_s,
      "counted_flops_per_step": flops,
      "achieved_flops_per_s": flops / step_s,
      "measured_matmul_peak_flops_per_s": peak,
      "ratio_to_measured_peak": flops / step_s / peak,
      **extra,
      **({"datasheet_peak_flops_per_s": sheet * jax.device_count(),
          "mfu_vs_datasheet": flops / step_s / (sheet * jax.device_count())}
         if sheet else {}),
      "final_loss": float(np.asarray(m["loss"])),
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
