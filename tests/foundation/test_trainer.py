"""The trainer: learning, checkpoints, resume, non-finite skip, bad input."""

import os
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from csm_jax.training.tasks.csm import CSMTask
from csm_jax.store.checkpoint import CheckpointError
from csm_jax.store.run_config import WorkdirError
from csm_jax.data.batch import BatchError
from csm_jax.training.run import make_task, train_and_evaluate
from csm_jax.training.trainer import Trainer
from tests.foundation.tiny import read_losses, tiny_config


_losses = read_losses


def test_trains_logs_checkpoints_and_resumes(tmp_path):
  c = tiny_config(train__steps=30, train__ckpt_every=10, train__eval_every=30)
  wd = str(tmp_path / "run")
  out = train_and_evaluate(c, wd)
  losses = _losses(wd)
  assert out["step"] == 30 and len(losses) == 30
  assert np.mean([losses[s] for s in range(26, 31)]) < \
      np.mean([losses[s] for s in range(1, 6)]) - 0.5
  assert "eval/loss" in out
  assert sorted(os.listdir(os.path.join(wd, "checkpoints")))[-1] == "30"
  assert any(f.startswith("events") for f in os.listdir(os.path.join(wd, "tb")))
  c.train.steps = 33
  out2 = train_and_evaluate(c, wd)
  assert out2["step"] == 33
  assert set(_losses(wd)) == set(range(1, 34))


def test_nonfinite_update_is_skipped_and_counted(tmp_path):
  class PoisonedTask(CSMTask):
    """Returns a NaN loss at step 1 only."""

    def loss_fn(self, model, batch, rng, step):
      losses, m = super().loss_fn(model, batch, rng, step)
      bad = jnp.where(step == 1, jnp.nan, 1.0)
      return {"model": losses["model"] * bad}, m

  c = tiny_config(train__steps=3)
  tr = Trainer(c, str(tmp_path), PoisonedTask(c))
  tr.compile()
  state = tr.builder.init(0, tr.mesh)
  it = iter(tr.task.train_dataset(4, 0))
  snap = lambda s: jax.tree.map(np.asarray, jax.device_get(s))
  state, m0 = tr.train_step(state, tr._put(next(it)))
  before = snap(state)
  state, m1 = tr.train_step(state, tr._put(next(it)))
  after = snap(state)
  assert int(m1["nonfinite/this_step"]) == 1
  assert int(after["skipped"]) == 1 and int(after["step"]) == 2
  jax.tree.map(np.testing.assert_array_equal, before["params"], after["params"])
  jax.tree.map(np.testing.assert_array_equal, before["opt"], after["opt"])
  state, m2 = tr.train_step(state, tr._put(next(it)))
  assert int(m2["nonfinite/this_step"]) == 0
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b),
                         after["params"], snap(state)["params"])
  assert any(jax.tree.leaves(changed))


def test_gradient_accumulation_matches_full_batch(tmp_path):
  """Micro-batches training on different numbers of frames: the step's
  gradient is the full batch's (a mean over frames, not a mean of means)."""
  base = next(iter(CSMTask(tiny_config()).train_dataset(4, 0)))
  batch = dict(base)
  # The second micro-batch trains on a handful of frames, the first on all.
  lm = batch["loss_mask"].copy()
  lm[2:, 6:] = False
  batch["loss_mask"] = lm

  def first_step(accum):
    c = tiny_config(train__accum_steps=accum, model__decoder_frame_fraction=1.0,
                    model__text_loss_weight=0.0)
    tr = Trainer(c, str(tmp_path / f"a{accum}"), make_task(c))
    tr.compile()
    state = tr.builder.init(0, tr.mesh)
    state, m = tr.train_step(state, tr._put(batch))
    return jax.device_get(state["params"]), jax.device_get(m)
  p1, m1 = first_step(1)
  p2, m2 = first_step(2)
  np.testing.assert_allclose(m2["loss"], m1["loss"], rtol=1e-5)
  np.testing.assert_allclose(m2["grad_norm/model"], m1["grad_norm/model"],
                             rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6),
               p1, p2)


def test_out_of_range_ids_fail_on_the_host(tmp_path):
  c = tiny_config()
  tr = Trainer(c, str(tmp_path), make_task(c))
  batch = next(iter(tr.task.train_dataset(4, 0)))
  batch["audio_tokens"][0, 0, 0] = c.model.audio_vocab
  with pytest.raises(BatchError, match="audio_tokens.*vocabulary"):
    tr._put(batch)
  batch = next(iter(tr.task.train_dataset(4, 0)))
  batch["text_tokens"] = batch["text_tokens"][:, :-1]
  with pytest.raises(BatchError, match="text_tokens.*shape"):
    tr._put(batch)


def test_workdir_of_another_config_is_refused(tmp_path):
  wd = str(tmp_path)
  train_and_evaluate(tiny_config(train__steps=2, train__ckpt_every=2), wd)
  other = tiny_config(train__steps=4)
  other.model.backbone.mlp = 96
  with pytest.raises(WorkdirError, match="model.backbone.mlp"):
    train_and_evaluate(other, wd)


def test_relative_workdir_checkpoints_and_resumes(tmp_path, monkeypatch):
  # The README's command passes a relative --workdir; Orbax wants absolute.
  monkeypatch.chdir(tmp_path)
  out = train_and_evaluate(tiny_config(train__steps=2, train__ckpt_every=1),
                           "runs/rel")
  assert out["step"] == 2
  assert (tmp_path / "runs" / "rel" / "checkpoints" / "2").is_dir()
  out = train_and_evaluate(tiny_config(train__steps=3, train__ckpt_every=1),
                           "runs/rel")
  assert out["step"] == 3


def test_training_only_fields_may_change_on_resume(tmp_path):
  from csm_jax.store.run_config import check_workdir_config
  wd = str(tmp_path)
  check_workdir_config(wd, tiny_config())
  changed = tiny_config(model__decoder_frame_fraction=0.5,
                        model__critical_codebooks=2,
                        model__detail_codebooks_per_step=1,
                        model__remat="full")
  check_workdir_config(wd, changed)  # accepted
  wider = tiny_config()
  wider.model.decoder.mlp = 96
  with pytest.raises(WorkdirError, match="model.decoder.mlp"):
    check_workdir_config(wd, wider)


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
  wd = str(tmp_path)
  train_and_evaluate(tiny_config(train__steps=2, train__ckpt_every=2), wd)
  state_dir = os.path.join(wd, "checkpoints", "2", "state")
  for root, _, files in os.walk(state_dir):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  with pytest.raises(CheckpointError, match=r"checkpoints/2"):
    train_and_evaluate(tiny_config(train__steps=4), wd)


def test_data_iterator_resumes_at_the_next_batch():
  c = tiny_config()
  task = CSMTask(c)
  it = iter(task.train_dataset(4, 3))
  for _ in range(3):
    next(it)
  state = it.get_state()
  want = next(it)
  it2 = iter(task.train_dataset(4, 3))
  it2.set_state(state)
  got = next(it2)
  for k in want:
    np.testing.assert_array_equal(want[k], got[k])


def test_resume_on_another_process_count_is_explained_or_elastic(tmp_path):
  wd = str(tmp_path)
  train_and_evaluate(tiny_config(train__steps=2, train__ckpt_every=2), wd)
  # Make the checkpoint look as if two processes had written it.
  data = tmp_path / "checkpoints" / "2" / "data"
  state = (data / "process_0-of-1.json").read_text()
  (data / "process_0-of-1.json").unlink()
  for i in range(2):
    (data / f"process_{i}-of-2.json").write_text(state)
  with pytest.raises(CheckpointError,
                     match=r"written by 2 processes and this run has 1.*"
                           r"elastic_resume"):
    train_and_evaluate(tiny_config(train__steps=3), wd)
  out = train_and_evaluate(tiny_config(train__steps=3,
                                       train__elastic_resume=True), wd)
  assert out["step"] == 3


def test_the_peak_is_measured_before_the_input_pipeline_starts(tmp_path,
                                                               monkeypatch):
  """The MFU's denominator is not measured beside the data threads or the
  compiler, which halved it on CPU."""
  from csm_jax.training import trainer as trainer_lib
  from csm_jax.training.run import make_task
  events = []
  real_peak = trainer_lib.peak_flops_per_device
  monkeypatch.setattr(trainer_lib, "peak_flops_per_device",
                      lambda: events.append("peak") or real_peak())
  c = tiny_config(train__steps=1, train__eval_every=1000)
  task = make_task(c)
  real_data = task.train_dataset
  monkeypatch.setattr(task, "train_dataset",
                      lambda *a: events.append("data") or real_data(*a))
  trainer_lib.Trainer(c, str(tmp_path / "run"), task).run()
  assert events[:2] == ["peak", "data"], events
