"""A training run from a config: build the task and what it needs, then train.

``make_task(config, workdir)`` is the run step above the ``Trainer``: for a
CSM on dialogue data it builds the corpus, the codec and the tokenizer first
(``prerequisites``); ``train_and_evaluate(config, workdir)`` then hands the
task to the one trainer. Without a workdir, ``make_task`` gives a task that
serves shapes and FLOPs but no data (plans, benchmarks).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from csm_jax.config import schema
from csm_jax.data.corpora import registry
from csm_jax.store import layout
from csm_jax.store import lock as workdir_lock
from csm_jax.store.run_config import check_workdir_config
from csm_jax.training import prerequisites
from csm_jax.training.tasks.base import Task
from csm_jax.training.tasks.csm import CSMTask
from csm_jax.training.trainer import EvalHook, Trainer


def make_task(config, workdir: str | None = None) -> Task:
  """The task of ``config.task``; with a workdir, ready to read its data."""
  if config.task == "csm":
    if workdir and config.data.source == "dialogues":
      codec, tokenizer = prerequisites.ensure_csm_inputs(config, workdir)
      return CSMTask(config, codec, tokenizer)
    return CSMTask(config)
  if config.task == "codec":
    if workdir:
      registry.ensure_corpus(config)
    return prerequisites.codec_task(config)
  raise schema.ConfigError("task", f"unknown task {config.task!r}")


def train_and_evaluate(
    config, workdir: str, task: Task | None = None,
    hooks: Sequence[EvalHook] = (),
    hook_factory: Callable[[Task], Sequence[EvalHook]] | None = None,
) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if it holds a run).

  ``hook_factory`` builds evaluation hooks from the prepared task (layers
  above training hand in hooks this way, e.g. the quick evaluation suite,
  which needs the task's codec and tokenizer).
  """
  schema.validate(config)
  # One run per workdir, its prerequisites (codec, tokenizer) included.
  with workdir_lock.hold(workdir):
    # Refuse a workdir of another model before building anything for it.
    check_workdir_config(layout.absolute(workdir), config)
    task = task or make_task(config, workdir)
    hooks = list(hooks) + list(hook_factory(task) if hook_factory else [])
    return Trainer(config, workdir, task, hooks=hooks).run()
