"""Input pipeline throughput against what the trainer consumes.

Times batches from the task's grain pipeline (the corpus, codec and
tokenizer of ``--workdir``, built there first if missing) and the train step
on the same shapes; the ratio says how much headroom the input has.
"""

from __future__ import annotations

import time

from csm_jax.bench.train_bench import bench_train
from csm_jax.training.run import make_task


def bench_data(config, workdir: str, batches: int = 50,
               train_steps: int = 5) -> dict:
  task = make_task(config, workdir)
  t0 = time.perf_counter()
  it = iter(task.train_dataset(config.data.batch_size, 0))
  first = next(it)
  startup_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  for _ in range(batches):
    next(it)
  per_batch = (time.perf_counter() - t0) / batches
  train = bench_train(config, steps=train_steps)
  step_s = train["step_ms_median"] / 1e3
  rows = first["segment_ids"].size
  return {
      "pipeline_startup_s": startup_s,
      "pipeline_batches_per_s": 1.0 / per_batch,
      "pipeline_rows_per_s": rows / per_batch,
      "trainer_steps_per_s": 1.0 / step_s,
      "ratio_pipeline_to_trainer": step_s / per_batch,
  }
