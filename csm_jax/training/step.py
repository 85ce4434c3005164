"""Pure train and eval step functions over the train-state pytree.

One step: for each parameter group, the gradient of that group's loss with
respect to that group's parameters (optionally accumulated over micro-batches
with ``lax.scan``, each weighted by ``task.batch_weight`` so that the result
is the gradient of the mean over everything the batch trains on, not a mean
of per-micro-batch means), one optax update per group, and a guard that leaves the
whole state unchanged (and counts the skip) when any loss or gradient is not
finite. The RNG of step s is ``fold_in(base_key, s)``, so a resumed run draws
exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from csm_jax.training.optim import schedule
from csm_jax.training.state import StateBuilder


def _tree_where(ok, new, old):
  return jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)


def _split_micro(batch, n: int):
  return jax.tree.map(lambda x: x.reshape(n, x.shape[0] // n, *x.shape[1:]),
                      batch)


def make_train_step(builder: StateBuilder, config):
  task, groups = builder.task, list(builder.groups)
  graphdef = builder.graphdef
  accum = config.train.accum_steps
  schedules = {g: schedule(config.train, task.group_learning_rate_scale(g))
               for g in groups}

  def grads_of(params, extra, batch, rng, step):
    """Per-group grads, losses, metrics and updated extra for one batch."""
    grads, out_extra, metrics, losses = {}, extra, {}, {}
    for g in groups:
      def loss_g(p_g):
        model = builder.merge(graphdef, {**params, g: p_g}, extra)
        group_losses, m = task.loss_fn(model, batch, rng, step)
        # Everything outside the parameter groups (with LoRA, the frozen
        # weights too), in the layout the state keeps it in.
        new_extra = builder.split(model)[2]
        return group_losses[g], (group_losses, m, new_extra)
      (_, (group_losses, m, new_extra)), gr = jax.value_and_grad(
          loss_g, has_aux=True)(params[g])
      grads[g] = gr
      if g == groups[0]:
        out_extra, metrics, losses = new_extra, m, group_losses
    return grads, out_extra, metrics, losses

  def train_step(state, batch):
    step = state["step"]
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), step)
    params, extra = state["params"], state["extra"]
    if accum == 1:
      grads, new_extra, metrics, losses = grads_of(params, extra, batch, key,
                                                   step)
    else:
      micro = _split_micro(batch, accum)

      def body(carry, inp):
        acc, ex, total_w = carry
        i, mb = inp
        g, ex, m, l = grads_of(params, ex, mb, jax.random.fold_in(key, i),
                               step)
        w = task.batch_weight(mb).astype(jnp.float32)
        acc = jax.tree.map(lambda a, x: a + w * x, acc, g)
        return (acc, ex, total_w + w), (m, l, w)

      zeros = jax.tree.map(jnp.zeros_like, params)
      (grads, new_extra, total_w), (ms, ls, ws) = jax.lax.scan(
          body, (zeros, extra, jnp.zeros((), jnp.float32)),
          (jnp.arange(accum), micro))
      # A batch with nothing to train on gets no update (zero gradient).
      denom = jnp.maximum(total_w, 1e-12)
      grads = jax.tree.map(lambda x: (x / denom).astype(x.dtype), grads)
      share = ws / denom
      metrics = jax.tree.map(lambda x: jnp.tensordot(share, x, 1), ms)
      losses = jax.tree.map(lambda x: jnp.tensordot(share, x, 1), ls)

    new_params, new_opt = {}, {}
    finite = jnp.asarray(True)
    for g in groups:
      gnorm = optax.tree.norm(grads[g])
      finite &= jnp.isfinite(gnorm) & jnp.isfinite(losses[g])
      updates, new_opt[g] = builder.optimizers[g].update(
          grads[g], state["opt"][g], params[g])
      new_params[g] = optax.apply_updates(params[g], updates)
      metrics[f"grad_norm/{g}"] = gnorm
      metrics[f"lr/{g}"] = schedules[g](step)
      metrics[f"loss/{g}"] = losses[g]
    # A non-finite update is dropped whole: params, optimizer and extra state.
    new_state = {
        "step": step + 1,
        "rng": state["rng"],
        "params": _tree_where(finite, new_params, params),
        "opt": _tree_where(finite, new_opt, state["opt"]),
        "extra": _tree_where(finite, new_extra, extra),
        "skipped": state["skipped"] + (~finite).astype(jnp.int32),
    }
    metrics["loss"] = losses[groups[0]]
    metrics["nonfinite/skipped_total"] = new_state["skipped"]
    metrics["nonfinite/this_step"] = (~finite).astype(jnp.int32)
    return new_state, metrics

  return train_step


def make_eval_step(builder: StateBuilder):
  task, graphdef = builder.task, builder.graphdef

  def eval_step(state, batch):
    model = builder.merge(graphdef, state["params"], state["extra"])
    key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), 0x7FFFFFFF)
    return task.eval_fn(model, batch, key)

  return eval_step
