"""The one trainer: ``Trainer(config, workdir, task).run()`` for every task.

Sections: validate the config against the devices; build the mesh for the
task it is given; create the state already sharded; compile the step ahead
of time and log its memory; restore the latest checkpoint (or refuse an
incompatible workdir); loop with logging, evaluation (the task's own and the
hooks it was given), checkpointing and a clean save on SIGTERM (then
``Preempted``, a SystemExit); return the last metrics.
``csm_jax.training.run.train_and_evaluate`` builds the task (and what it
needs) from a config and calls it.
"""

from __future__ import annotations

import signal
import time
from typing import Any, Protocol, Sequence

import jax
import numpy as np
from absl import logging

from csm_jax.config import schema
from csm_jax.data.batch import validate_batch
from csm_jax.parallel import sharding as shd
from csm_jax.parallel.hardware import peak_flops_per_device
from csm_jax.parallel.mesh import make_mesh
from csm_jax.store import checkpoint as ckpt
from csm_jax.store import layout
from csm_jax.store import lock as workdir_lock
from csm_jax.store.run_config import check_workdir_config, save_run_config
from csm_jax.training.reporting import MetricsReporter
from csm_jax.training.state import (StateBuilder, abstract_with_shardings,
                                    param_count)
from csm_jax.training.step import make_eval_step, make_train_step
from csm_jax.training.tasks.base import Task


class EvalHook(Protocol):
  """Extra evaluation the trainer runs every ``every`` steps (and at the end).

  Called with the current model, the step, the reporter and the workdir; the
  metrics it returns are logged under ``eval/`` beside the held-out losses.
  This is how layers above training (``csm_jax.eval``) evaluate during a run
  without the trainer importing them.
  """

  every: int

  def __call__(self, model, step: int, reporter,
               workdir: str) -> dict[str, float]:
    ...


class Preempted(SystemExit):
  """SIGTERM arrived: the step it stopped at is saved. A SystemExit (code
  143, as a process killed by SIGTERM): it ends the command that trains
  (a results page's variant, a sweep), not only this loop, so nothing goes
  on from a model that stopped part way."""

  def __init__(self, step: int):
    super().__init__(143)
    self.step = step


class _Preemption:
  """Turns SIGTERM into a flag the loop checks, so it can save and exit."""

  def __init__(self):
    self.requested = False
    self._old = None

  def __enter__(self):
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. inside a notebook worker)
      self._old = None
    return self

  def _handle(self, *_):
    self.requested = True

  def __exit__(self, *exc):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def _batch_shardings(task: Task, mesh):
  spec = task.batch_spec()
  return {k: jax.sharding.NamedSharding(
      mesh, shd.logical_to_spec(fs.axes, None, mesh)) for k, fs in spec.items()}


def _abstract_batch(task: Task, batch_size: int, shardings):
  return {k: jax.ShapeDtypeStruct((batch_size, *fs.shape), fs.dtype,
                                  sharding=shardings[k])
          for k, fs in task.batch_spec().items()}


def _memory_report(compiled) -> dict[str, float]:
  try:
    mem = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if mem is None:
    return {}
  keys = ("argument_size_in_bytes", "output_size_in_bytes",
          "temp_size_in_bytes", "generated_code_size_in_bytes")
  return {k: float(getattr(mem, k, 0)) for k in keys}


class Trainer:
  """Holds the compiled step and the state; ``run()`` is the loop."""

  def __init__(self, config, workdir: str, task: Task, devices=None,
               hooks: Sequence[EvalHook] = ()):
    n_dev = len(devices) if devices is not None else jax.device_count()
    schema.validate(config, n_devices=n_dev, n_processes=jax.process_count())
    self.config = config
    self.workdir = layout.absolute(workdir) if workdir else workdir
    self.task = task
    self.hooks = list(hooks)
    self.mesh = make_mesh(config, devices)
    self.builder = StateBuilder.create(self.task, config)
    abstract = self.builder.build_abstract()
    self.state_shardings = self.builder.shardings(self.mesh)
    self.abstract_state = abstract_with_shardings(abstract,
                                                  self.state_shardings)
    self.params = param_count(abstract)
    self.batch_size = config.data.batch_size
    self.local_batch = self.batch_size // jax.process_count()
    self.batch_shardings = _batch_shardings(self.task, self.mesh)
    self.reporter = None

  # -- compile ---------------------------------------------------------------
  def compile(self):
    """Lowers and compiles train/eval steps for the exact shapes and layout."""
    abstract_batch = _abstract_batch(self.task, self.batch_size,
                                     self.batch_shardings)
    train_step = make_train_step(self.builder, self.config)
    eval_step = make_eval_step(self.builder)
    t0 = time.perf_counter()
    with shd.activation_sharding(self.mesh):
      self.train_step = jax.jit(
          train_step, in_shardings=(self.state_shardings, self.batch_shardings),
          out_shardings=(self.state_shardings, None),
          donate_argnums=(0,)).lower(self.abstract_state,
                                     abstract_batch).compile()
      self.eval_step = jax.jit(
          eval_step, in_shardings=(self.state_shardings,
                                   self.batch_shardings)).lower(
                                       self.abstract_state,
                                       abstract_batch).compile()
    self.memory = _memory_report(self.train_step)
    logging.info("compiled train step in %.1fs; memory per device: %s",
                 time.perf_counter() - t0,
                 {k: f"{v / 2**20:.1f} MiB" for k, v in self.memory.items()})

  # -- data ------------------------------------------------------------------
  def _put(self, batch) -> dict[str, jax.Array]:
    validate_batch(batch, self.task.batch_spec(), self.local_batch)
    return shd.host_to_global(batch, self.batch_shardings)

  def evaluate(self, state) -> dict[str, float]:
    totals: dict[str, float] = {}
    n = 0
    for batch in self.task.eval_dataset(self.local_batch):
      if n >= self.config.train.eval_steps:
        break
      m = jax.device_get(self.eval_step(state, self._put(batch)))
      for k, v in m.items():
        totals[k] = totals.get(k, 0.0) + float(np.asarray(v))
      n += 1
    return {k: v / max(n, 1) for k, v in totals.items()}

  # -- loop --------------------------------------------------------------------
  def run(self) -> dict[str, Any]:
    # One run per workdir (store.lock); a save that fails stops the run
    # with SaveFailed, the committed checkpoints intact.
    t = self.config.train
    with workdir_lock.hold(self.workdir):
      manager = ckpt.make_manager(self.workdir, t.keep_checkpoints,
                                  t.async_checkpoint, writer=True)
      saver = ckpt.Saver(manager, poll=jax.process_count() == 1)
      try:
        return self._loop(saver)
      finally:
        saver.close()
        if self.reporter is not None:
          self.reporter.close()

  def _loop(self, saver) -> dict[str, Any]:
    c, t = self.config, self.config.train
    check_workdir_config(self.workdir, c)
    save_run_config(self.workdir, c)
    # The MFU's denominator (measured where no datasheet knows the chip,
    # then cached for the process) comes before the input pipeline starts
    # and before compiling. Measured after them, the README's job logged
    # 1.3e11 FLOP/s on 2 CPU cores where the same matmul alone reaches
    # 2.8e11, so its MFU read twice too high.
    peak, peak_src = peak_flops_per_device()
    data_seed = c.data.seed + 7919 * t.seed
    iterator = iter(self.task.train_dataset(self.local_batch, data_seed))
    # The newest checkpoint that restores; unrestorable newer ones are set
    # aside with a warning (store.checkpoint.restore_latest).
    restored = ckpt.restore_latest(saver.manager, self.workdir,
                                   self.abstract_state, iterator,
                                   elastic=t.elastic_resume)
    if restored is not None:
      state, data_restored, latest = restored
      if not data_restored:
        # Another process count: a new data order, seeded by the step so
        # that it does not replay the run's first batches.
        iterator = iter(self.task.train_dataset(
            self.local_batch, data_seed + 1_000_003 * latest))
      logging.info("resuming from step %d", latest)
    else:
      state = self.builder.init(t.seed, self.mesh)
    self.compile()
    step = int(jax.device_get(state["step"]))
    # Rows of steps after the restored one are replayed: replaced, not kept.
    self.reporter = MetricsReporter(self.workdir, t.steps, resume_step=step)
    flops = self.task.flops_per_batch(self.batch_size)
    items = self.task.items_per_batch(self.batch_size)
    logging.info("params %s; %.3g FLOPs/step; peak %.3g FLOP/s/device (%s)",
                 self.params, flops, peak, peak_src)
    last: dict[str, Any] = {}
    t_last, s_last = time.perf_counter(), step
    with _Preemption() as preempt:
      while step < t.steps:
        batch = self._put(next(iterator))
        state, metrics = self.train_step(state, batch)
        step += 1
        saver.check()  # a background save that failed stops the run here
        if step % t.log_every == 0 or step == t.steps:
          metrics = jax.device_get(metrics)
          now = time.perf_counter()
          rate = (step - s_last) / max(now - t_last, 1e-9)
          t_last, s_last = now, step
          perf = {"perf/steps_per_s": rate,
                  f"perf/{items[0]}_per_s": rate * items[1]}
          if flops:
            perf["perf/flops_per_s"] = rate * flops
            perf["perf/mfu"] = rate * flops / (peak * jax.device_count())
          last = {**metrics, **perf}
          self.reporter.scalars(step, last)
          self.reporter.progress(step, last, rate, items)
        if step % t.eval_every == 0 or step == t.steps:
          ev = self.evaluate(state)
          self.reporter.scalars(step, ev, prefix="eval/")
          last.update({f"eval/{k}": v for k, v in ev.items()})
          model = self.builder.merge(self.builder.graphdef, state["params"],
                                     state["extra"])
          self.task.on_eval(model, step, self.reporter, self.workdir)
        for hook in self.hooks:
          if step % hook.every == 0 or step == t.steps:
            ev = hook(self.builder.merge(self.builder.graphdef,
                                         state["params"], state["extra"]),
                      step, self.reporter, self.workdir) or {}
            self.reporter.scalars(step, ev, prefix="eval/")
            last.update({f"eval/{k}": v for k, v in ev.items()})
        if step % t.ckpt_every == 0 or step == t.steps or preempt.requested:
          saver.save(step, state, iterator, force=True)
        if preempt.requested:
          logging.warning("SIGTERM: saved step %d, exiting", step)
          break
    saver.finish()
    self.state = state
    if preempt.requested:
      raise Preempted(step)
    return {k: (float(np.asarray(v)) if np.ndim(v) == 0 else v)
            for k, v in last.items()} | {"step": step}
