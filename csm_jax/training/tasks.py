"""Task registry: ``config.task`` name -> Task instance."""

from __future__ import annotations

from csm_jax.training.task import Task


def make_task(config) -> Task:
  if config.task == "csm":
    from csm_jax.model.task import CSMTask  # pylint: disable=g-import-not-at-top
    return CSMTask(config)
  if config.task == "codec":
    from csm_jax.codec.task import CodecTask  # pylint: disable=g-import-not-at-top
    return CodecTask(config)
  raise ValueError(f"config.task: unknown task {config.task!r}")
