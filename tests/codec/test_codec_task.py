"""CodecTask: data pipeline, group-separated GAN gradients, warmup gate, training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from csm_jax.training.tasks.codec import CodecTask
from csm_jax.data.batch import validate_batch


@pytest.fixture(scope="module")
def setup(tiny, clips):
  task = CodecTask(tiny, clip_source=clips)
  model = task.build_model(nnx.Rngs(0))
  groups = task.param_groups()
  graphdef, pg, pd, rest = nnx.split(model, groups["generator"],
                                     groups["discriminator"], ...)

  @jax.jit
  def grads(pg, pd, rest, batch, rng, step):
    # Same pattern as the trainer: merge inside each group's grad, with the
    # non-Param state closed over from the outer trace.
    def gen(pg):
      m = nnx.merge(graphdef, pg, pd, rest)
      losses, metrics = task.loss_fn(m, batch, rng, step)
      return losses["generator"], (losses, metrics,
                                   nnx.state(m, nnx.Not(nnx.Param)))

    def disc(pg, pd):
      m = nnx.merge(graphdef, pg, pd, rest)
      return task.loss_fn(m, batch, rng, step)[0]["discriminator"]

    (_, (losses, metrics, new_rest)), g_gen = jax.value_and_grad(
        gen, has_aux=True)(pg)
    d_gen, d_disc = jax.grad(disc, argnums=(0, 1))(pg, pd)
    return losses, metrics, g_gen, d_gen, d_disc, new_rest

  batch = next(iter(task.train_dataset(4, seed=0)))
  return task, graphdef, pg, pd, rest, grads, batch


def test_a_few_threads_read_the_batches_and_stop_ahead(tiny, clips):
  """Batches come from ``data.worker_threads`` reader threads keeping
  ``data.prefetch`` batches ready, not grain's 16 threads and 500 batches,
  which on two cores fought the step for the GIL and kept reading while
  the final checkpoint waited to be written."""
  import threading  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  calls = []

  class Counted:
    def __len__(self):
      return len(clips)

    def __getitem__(self, i):
      calls.append(i)
      return clips[i]

  task = CodecTask(tiny, clip_source=Counted())
  before = threading.active_count()
  it = iter(task.train_dataset(2, seed=0))
  next(it)
  assert threading.active_count() - before <= 3
  time.sleep(0.5)
  # One batch taken, at most the prefetched batches read ahead (and the
  # ones in flight on the reader threads).
  assert len(calls) <= 2 * (1 + 4 + 2), len(calls)


def _norm(tree):
  return float(optax.tree.norm(tree))


def test_datasets(setup, tiny):
  task, *_ = setup
  it = iter(task.train_dataset(4, seed=0))
  a, b = next(it), next(it)
  validate_batch(a, task.batch_spec(), 4)
  assert a["audio"].shape == (4, 320) and a["audio"].dtype == np.float32
  assert not np.array_equal(a["audio"], b["audio"])
  again = next(iter(task.train_dataset(4, seed=0)))
  np.testing.assert_array_equal(again["audio"], a["audio"])  # seeded
  ev = list(task.eval_dataset(4))
  assert [x["audio"].shape for x in ev] == [(4, 320), (4, 320)]  # 6 wrap to 8
  np.testing.assert_array_equal(ev[1]["audio"][2], ev[0]["audio"][0])
  np.testing.assert_array_equal(ev[0]["audio"],
                                list(task.eval_dataset(4))[0]["audio"])
  assert task.items_per_batch(4) == ("audio_seconds", 4 * 320 / 8000)


def test_groups_are_separated_and_finite(setup):
  task, graphdef, pg, pd, rest, grads, batch = setup
  step = jnp.asarray(1000)  # adversarial terms on
  losses, metrics, g_gen, d_gen, d_disc, new_rest = grads(
      pg, pd, rest, batch, jax.random.key(0), step)
  assert np.isfinite(float(losses["generator"]))
  assert np.isfinite(float(losses["discriminator"]))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g_gen))
  assert _norm(g_gen) > 0 and _norm(d_disc) > 0
  # The discriminator loss sees stop_gradient'ed fake audio.
  assert _norm(d_gen) == 0.0
  assert float(metrics["adversarial_gate"]) == 1.0
  # The training pass mutated the codebook state (k-means init).
  assert not bool(rest["codec"]["quantizer"]["acoustic"]["initialized"][...])
  assert bool(new_rest["codec"]["quantizer"]["acoustic"]["initialized"][...])


def test_adversarial_warmup_gate(setup, tiny):
  task, graphdef, pg, pd, rest, grads, batch = setup
  warm = tiny.losses.adversarial_warmup_steps
  lo = tiny.losses
  before = grads(pg, pd, rest, batch, jax.random.key(0), jnp.asarray(warm - 1))
  after = grads(pg, pd, rest, batch, jax.random.key(0), jnp.asarray(warm))
  m = after[1]
  extra = (lo.adversarial_weight * m["loss/adversarial"]
           + lo.feature_matching_weight * m["loss/feature_matching"])
  assert float(before[1]["adversarial_gate"]) == 0.0
  np.testing.assert_allclose(after[0]["generator"] - before[0]["generator"],
                             extra, rtol=1e-4)
  assert float(extra) > 0


def test_training_reduces_reconstruction_loss(setup):
  task, graphdef, pg, pd, rest, grads, batch = setup
  opt = optax.adam(3e-3)
  opt_g, opt_d = opt.init(pg), opt.init(pd)

  def recon(metrics):
    return float(metrics["loss/mel"] + metrics["loss/stft"])

  first = None
  for i in range(40):
    losses, metrics, g_gen, _, d_disc, rest = grads(
        pg, pd, rest, batch, jax.random.key(i), jnp.asarray(i))
    first = recon(metrics) if first is None else first
    up, opt_g = opt.update(g_gen, opt_g, pg)
    pg = optax.apply_updates(pg, up)
    up, opt_d = opt.update(d_disc, opt_d, pd)
    pd = optax.apply_updates(pd, up)
  final = recon(grads(pg, pd, rest, batch, jax.random.key(99),
                      jnp.asarray(40))[1])
  print(f"reconstruction loss {first:.3f} -> {final:.3f}")
  assert final < 0.8 * first


def test_codec_from_train_state_and_on_eval(setup, tmp_path):
  from csm_jax.store import models
  task, graphdef, pg, pd, rest, grads, batch = setup
  codec = models.merge(graphdef, {"generator": pg, "discriminator": pd},
                       rest, task.param_groups()).codec
  assert codec.levels == 3
  np.testing.assert_array_equal(
      nnx.state(codec, nnx.Param)["encoder"]["conv_in"]["kernel"][...],
      pg["codec"]["encoder"]["conv_in"]["kernel"][...])
  model = nnx.merge(graphdef, pg, pd, rest)
  task.on_eval(model, 7, None, str(tmp_path))
  out = tmp_path / "codec_samples" / "step_7"
  assert (out / "0_codec.wav").exists() and (out / "0_ref.wav").exists()


def _clip_ids(batches):
  # Clip i is the constant (i + 1) / 100: its crops say where they came from.
  return {int(round(v * 100)) - 1 for b in batches for v in b["audio"][:, 0]}


def test_each_process_reads_its_own_clips(tiny, monkeypatch):
  """Multi-host codec training: hosts never read the same clips."""
  n, seg = 8, int(tiny.segment_seconds * tiny.sample_rate)
  clips = [np.full(seg * 2, (i + 1) / 100, np.float32) for i in range(n)]
  seen = {}
  monkeypatch.setattr(jax, "process_count", lambda: 2)
  for p in (0, 1):
    monkeypatch.setattr(jax, "process_index", lambda p=p: p)
    task = CodecTask(tiny, clip_source=clips, eval_source=clips[:5])
    it = iter(task.train_dataset(2, seed=0))
    seen[p] = _clip_ids([next(it) for _ in range(2)])  # one epoch of 4 clips
    seen[f"eval{p}"] = list(task.eval_dataset(2))
  assert seen[0] | seen[1] == set(range(n))
  assert not seen[0] & seen[1]
  # Held-out: as many batches on every host (a collective step), disjoint.
  assert len(seen["eval0"]) == len(seen["eval1"])
  assert not _clip_ids(seen["eval0"]) & _clip_ids(seen["eval1"])
  assert _clip_ids(seen["eval0"]) | _clip_ids(seen["eval1"]) == set(range(5))
