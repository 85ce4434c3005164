"""Ahead-of-time plans: compile the real train step for a topology we lack.

``make_plan(config, topology)`` builds the abstract train state with
``eval_shape``, lays it out on the config's mesh over abstract devices, compiles
the actual train step and reports per-chip memory against HBM, FLOPs per
step, the compiler's step-time estimate where it gives one, and the implied
MFU and tokens/s. Nothing is allocated: it runs on a CPU host.
"""

from __future__ import annotations

import time

import jax
import numpy as np

from csm_jax.config.errors import UserError
from csm_jax.parallel import topology as topo_lib
from csm_jax.parallel.sharding import mesh_axis_sizes
from csm_jax.training.run import make_task
from csm_jax.training.trainer import Trainer


# What well-tuned JAX trainers reach at these sizes (46-50% at 7B on H100s,
# ~30% at 1B); used only when the compiler gives no step-time estimate.
ASSUMED_MFU = 0.4


class PlanDoesNotFit(UserError, RuntimeError):
  """The compiled step needs more memory per chip than the chip has."""


def _sharded_bytes(tree, shardings, mesh) -> float:
  """Bytes per device of a (possibly sharded) tree of abstract arrays."""
  sizes = mesh_axis_sizes(mesh)
  total = 0.0
  for a, s in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
    shards = 1
    for entry in s.spec:
      for ax in (entry if isinstance(entry, tuple) else (entry,)):
        if ax is not None:
          shards *= sizes[ax]
    total += a.size * np.dtype(a.dtype).itemsize / shards
  return total


def _cost(compiled) -> dict:
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return {}
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  return dict(cost or {})


def make_plan(config, topology: str,
              device_memory: tuple[int, ...] = ()) -> dict:
  """Compiles ``config``'s train step for ``topology``; returns the report.

  ``device_memory`` (bytes per device, one or more sizes) replaces the
  chip's memory; the report says which of them the step fits.
  """
  topo = topo_lib.resolve(topology)
  if device_memory:
    topo = topo_lib.with_memory(topo, max(device_memory))
  trainer = Trainer(config, "", make_task(config), devices=list(topo.devices))
  t0 = time.perf_counter()
  try:
    trainer.compile()
  except Exception as e:  # pylint: disable=broad-except
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    # The TPU compiler refuses programs that cannot fit; that is a verdict.
    raise PlanDoesNotFit(
        f"{config.size} on {topo.name} (mesh "
        f"{dict(mesh_axis_sizes(trainer.mesh))}) does not fit: "
        f"{str(e).splitlines()[0][:300]}. Raise mesh.fsdp, use "
        "model.remat=full, lower data.batch_size or add train.accum_steps") \
        from None
  compile_s = time.perf_counter() - t0
  mesh = trainer.mesh
  abstract = trainer.builder.abstract
  shard = trainer.state_shardings
  params_b = _sharded_bytes(abstract["params"], shard["params"], mesh)
  opt_b = _sharded_bytes(abstract["opt"], shard["opt"], mesh)
  # Frozen weights of a LoRA run (and EMA codebooks) live in "extra".
  extra_b = _sharded_bytes(abstract["extra"], shard["extra"], mesh)
  mem = trainer.memory
  args_b = mem.get("argument_size_in_bytes", 0.0)
  temp_b = mem.get("temp_size_in_bytes", 0.0)
  # The state is donated, so outputs reuse the argument buffers.
  total_b = args_b + temp_b
  cost = _cost(trainer.train_step)
  counted = trainer.task.flops_per_batch(config.data.batch_size)
  est_s = cost.get("optimal_seconds")
  tokens = config.data.batch_size * config.data.seq_len
  report = {
      "config": config.size, "topology": topo.name, "chips": topo.chips,
      "mesh": dict(mesh_axis_sizes(mesh)),
      "params": trainer.params,
      "per_chip": {
          "parameters": params_b, "optimizer_state": opt_b,
          "frozen_and_other": extra_b,
          "arguments_total": args_b,
          "activations_and_temporaries": temp_b,
          "total": total_b, "hbm": float(topo.hbm_bytes),
      },
      "fits": total_b <= topo.hbm_bytes,
      "fits_on": {topo_lib.mib(m): total_b <= m
                  for m in sorted(device_memory or (topo.hbm_bytes,))},
      "lora_rank": int(config.train.get("lora", {}).get("rank", 0)),
      "flops_per_step_counted": counted,
      "flops_per_step_per_chip_xla": float(cost.get("flops", 0.0)),
      "compile_s": compile_s,
      "tokens_per_step": tokens,
  }
  # XLA's cost model counts a while-loop body once, so with scanned layers its
  # time is far too short (an MFU above 100%); it is reported but only used
  # when it is plausible.
  if est_s is not None:
    report["compiler_step_s"] = float(est_s)
  plausible = (est_s is not None and est_s > 0 and topo.peak_flops and
               counted / (est_s * topo.chips * topo.peak_flops) <= 1.0)
  if plausible:
    report["step_s_estimate"] = float(est_s)
    report["step_s_source"] = "compiler cost model"
  elif topo.peak_flops:
    report["step_s_estimate"] = counted / (
        topo.chips * topo.peak_flops * ASSUMED_MFU)
    report["step_s_source"] = (
        f"counted FLOPs at an assumed {ASSUMED_MFU:.0%} MFU; the compiler's "
        "estimate counts loop bodies once")
  if topo.peak_flops and report.get("step_s_estimate"):
    s = report["step_s_estimate"]
    report["implied_mfu"] = counted / (s * topo.chips * topo.peak_flops)
    report["tokens_per_s"] = tokens / s
  report["sharding"] = _group_layout(trainer)
  return report


def _group_layout(trainer) -> list[tuple[str, str]]:
  """How each parameter group of the model is laid out (a few rows each)."""
  rows = []
  abstract = trainer.builder.abstract["params"]
  shard = trainer.state_shardings["params"]
  flat = jax.tree_util.tree_leaves_with_path(abstract)
  flat_s = jax.tree.leaves(shard)
  for (path, a), s in zip(flat, flat_s):
    name = jax.tree_util.keystr(path).replace("['", ".").replace("']", "")
    name = name.strip(".").removesuffix(".value")
    rows.append((name, f"{tuple(a.shape)} -> {s.spec}"))
  return rows


def format_plan(r: dict) -> str:
  mib = topo_lib.mib
  pc = r["per_chip"]
  lora = (f", LoRA rank {r['lora_rank']} (trained: the adapters)"
          if r.get("lora_rank") else "")
  lines = [
      f"plan: {r['config']} on {r['topology']} ({r['chips']} chips), "
      f"mesh {r['mesh']}{lora}",
      f"trained parameters: {r['params']}",
      "per-chip memory:",
      f"  trained parameters     {mib(pc['parameters'])}",
      f"  optimizer state        {mib(pc['optimizer_state'])}",
      f"  frozen weights + other {mib(pc.get('frozen_and_other', 0.0))}",
      f"  arguments (state+batch){mib(pc['arguments_total']):>12}",
      f"  activations+temporaries{mib(pc['activations_and_temporaries']):>12}",
      f"  total                  {mib(pc['total'])} of {mib(pc['hbm'])} HBM "
      f"({100 * pc['total'] / pc['hbm']:.0f}%)",
      f"FLOPs per step (counted): {r['flops_per_step_counted']:.3e}",
      f"tokens per step: {r['tokens_per_step']:,}",
  ]
  if "compiler_step_s" in r:
    lines.append(f"compiler cost-model step time: {r['compiler_step_s']:.3f} s")
  if "step_s_estimate" in r:
    lines.append(f"step time estimate: {r['step_s_estimate']:.3f} s "
                 f"({r['step_s_source']})")
  if "implied_mfu" in r:
    lines.append(f"implied MFU: {100 * r['implied_mfu']:.1f}%   "
                 f"tokens/s: {r['tokens_per_s']:,.0f}")
  lines.append(f"compile time: {r['compile_s']:.1f} s")
  lines.append("sharding (parameter -> spec):")
  for name, spec in r["sharding"]:
    lines.append(f"  {name:<48} {spec}")
  if len(r.get("fits_on", {})) > 1:
    for size, ok in r["fits_on"].items():
      lines.append(f"on one {size} device: {'FITS' if ok else 'DOES NOT FIT'}")
  lines.append("FITS" if r["fits"] else "DOES NOT FIT")
  return "\n".join(lines)


def check_fits(r: dict) -> None:
  if not r["fits"]:
    pc = r["per_chip"]
    raise PlanDoesNotFit(
        f"{r['config']} on {r['topology']} needs "
        f"{topo_lib.mib(pc['total'])} per chip but a chip has "
        f"{topo_lib.mib(pc['hbm'])}: raise mesh.fsdp, use model.remat=full, "
        "lower data.batch_size or add train.accum_steps")

