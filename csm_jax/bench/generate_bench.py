"""Generation speed against the memory-bandwidth floor, with random weights.

A decoded frame must read every backbone weight once and the depth decoder's
weights once per codebook step, so ``weight bytes per frame / bandwidth`` is
a floor on ms per frame at batch 1. The bandwidth is measured in the same run
(a large on-device reduction), and the report gives our ratio to the floor.

Each figure is the median of ``repeats`` timed runs of ``frames`` frames
(with their spread, (max - min) / median: the machine may be shared). The
same run also times batches 1, 2, 4, 8 (frames/s and the ratio to batch 1),
speculative depth decoding (ms/frame and the ratio to plain decoding) and
the released CSM's eager PyTorch loop; each of these is timed in
alternation with our batch-1 decoding, run for run, and its ratio is the
median of the runs' ratios, so that both sides of a ratio saw the same load
(``hardware.timed_paired``).
"""

from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.bench import torch_reference
from csm_jax.config.errors import UsageError
from csm_jax.inference import decode, speculative
from csm_jax.inference.generator import Sampling
from csm_jax.model.csm import CSM
from csm_jax.model.loss import stack_products
from csm_jax.parallel.hardware import (measured_bandwidth,
                                       measured_product_chain, timed,
                                       timed_paired)


def weight_bytes_per_frame(model) -> int:
  """Bytes of weights one frame reads: backbone + heads + N x decoder."""
  def nbytes(tree):
    return sum(x.size * x.dtype.itemsize
               for x in jax.tree.leaves(nnx.state(tree, nnx.Param)))
  n = model.n_codebooks
  backbone = nbytes(model.backbone) + nbytes(model.codebook0_head)
  decoder = nbytes(model.decoder) + nbytes(model.projection)
  head = model.audio_head[...]
  per_head = head[0].size * head.dtype.itemsize
  # The decoder runs N steps (one for h, N-1 for codes); each code step
  # reads one of the N-1 heads.
  return backbone + n * decoder + (n - 1) * per_head


def _step_products(spec) -> list[tuple[int, int]]:
  """(d_in, d_out) of every product a stack's one-row step makes."""
  return [(k, o) for _, k, o in stack_products(spec, 1)]


def speculative_ratio(backbone_steps: float, n: int, passes: float,
                      round_steps: float) -> float:
  """Speculative over plain ms/frame when a frame is its products: the
  backbone and the h step, then ``passes`` rounds of ``round_steps``
  one-row decoder steps each, against the backbone and N steps."""
  return (backbone_steps + 1 + passes * round_steps) / (backbone_steps + n)


def product_limits(model, batches, draft: int, dtype=jnp.float32) -> dict:
  """What this machine's matrix kernels allow batching and verification.

  Times the products of one frame (the backbone with codebook 0's head,
  and N decoder steps with the projection and a codebook head) with random
  weights of the model's shapes in ``dtype``, at 1 row and at each batch
  (and at the ``draft + 1`` rows of a verification pass).
  ``limit_batch{b}_ratio`` is the frames/s ratio batch b would reach over
  batch 1 if a frame were its products alone; ``verify_pass_steps`` is
  what one teacher-forced pass over
  ``draft + 1`` positions costs in one-row decoder steps (1 on a
  memory-bound machine, more where extra rows cost compute), and
  ``ratio_at_full_acceptance`` speculative decoding's best ms/frame ratio
  to plain decoding from these products (every draft accepted).
  """
  bb, dec = model.backbone.spec, model.decoder.spec
  vocab, n = model.audio_vocab, model.n_codebooks
  verify = draft + 1 if draft else None
  rows = sorted({1, *batches, *([verify] if verify else [])})
  t_bb = measured_product_chain(_step_products(bb) + [(bb.width, vocab)],
                                rows, dtype=dtype)
  # A frame's N decoder steps over the same weights (warm in cache where
  # they fit, as when decoding), per step.
  t_dec = measured_product_chain(
      [(bb.width, dec.width)] + _step_products(dec) + [(dec.width, vocab)],
      rows, passes=n, dtype=dtype)
  t_dec = {m: t / n for m, t in t_dec.items()}
  frame = {m: t_bb[m] + n * t_dec[m] for m in rows}
  out = {f"limit_batch{b}_ratio": b * frame[1] / frame[b]
         for b in batches if b > 1}
  if verify:
    v = t_dec[verify] / t_dec[1]
    out["verify_pass_steps"] = v
    # A round is one pass and ``draft`` one-block drafts; with every draft
    # accepted N - 1 codes take ceil((N - 1) / (draft + 1)) rounds.
    out["round_steps"] = v + draft / dec.depth
    out["backbone_steps"] = t_bb[1] / t_dec[1]
    out["ratio_at_full_acceptance"] = speculative_ratio(
        out["backbone_steps"], n, -(-(n - 1) // verify), out["round_steps"])
  return out


def trained_model(checkpoint: str):
  """(config, stacked CSM) of a training run or an export, weights only."""
  from csm_jax.store import layout  # pylint: disable=g-import-not-at-top
  from csm_jax.store.restore import restore_params  # pylint: disable=g-import-not-at-top
  cpu = jax.default_backend() == "cpu"
  r = restore_params(layout.absolute(checkpoint),
                     dtype="float32" if cpu else None)
  return r.config, nnx.merge(r.graphdef, r.params["model"])


def _decoding_run(model, config, frames: int, prompt_rows: int,
                  frames_per_call: int, top_k: int, batch: int = 1,
                  draft: int = 0) -> dict:
  """One model layout compiled and warmed up, ready to time.

  Returns the compile and first-chunk seconds and ``repeat``: a callable
  that decodes ``frames`` frames (``frames / frames_per_call`` compiled
  calls, as a stream makes them) from the same prefilled prompt, so every
  repeat does the same work (a cache that grew across repeats would make
  later ones slower). ``draft`` > 0 decodes speculatively
  (``csm_jax.inference.speculative``); each repeat's stats are appended to
  ``stats``.
  """
  graphdef, params = nnx.split(model)
  n = config.model.n_codebooks
  calls = max(frames // frames_per_call, 1)
  rows = prompt_rows + frames_per_call * calls
  if rows > config.model.max_seq_len:
    raise UsageError(f"--frames={frames} after a {prompt_rows}-row prompt "
                     f"need {rows} cache rows; the model has "
                     f"{config.model.max_seq_len} (model.max_seq_len): time "
                     "fewer frames")
  max_len = rows + 8 if rows + 8 <= config.model.max_seq_len else rows
  temps = jnp.full((n,), 0.9, jnp.float32)

  @jax.jit
  def prefill(params, audio, text, mask, positions, segments):
    m = nnx.merge(graphdef, params)
    state = decode.init_state(m, batch, max_len)
    return decode.append_rows(m, state, audio, text, mask, positions, segments)

  @jax.jit
  def step(params, state, key):
    m = nnx.merge(graphdef, params)
    if draft:
      out = speculative.generate_frames(m, state, key, frames_per_call, temps,
                                        top_k=top_k, draft=draft,
                                        return_stats=True)
      return out[0], out[2], out[-1]
    codes, _, state = decode.generate_frames(m, state, key, frames_per_call,
                                             temps, top_k=top_k)
    return codes, state, None

  rng = np.random.default_rng(0)
  t = prompt_rows
  audio = jnp.asarray(rng.integers(0, config.model.codebook_size, (1, t, n)),
                      jnp.int32)
  text = jnp.asarray(rng.integers(0, config.model.text_vocab, (1, t)),
                     jnp.int32)
  mask = jnp.ones((1, t, n + 1), bool).at[:, : t // 2, :n].set(False)
  mask = mask.at[:, t // 2:, n].set(False)
  positions = jnp.arange(t, dtype=jnp.int32)[None]
  segments = jnp.ones((1, t), jnp.int32)
  args = tuple(jnp.repeat(a, batch, axis=0)
               for a in (audio, text, mask, positions, segments))
  # One key per example, as the Generator passes them.
  keys = lambda i: jax.random.split(jax.random.key(i), batch)

  t0 = time.perf_counter()
  start = prefill(params, *args)
  codes, _, _ = step(params, start, keys(0))
  jax.block_until_ready(codes)
  compile_s = time.perf_counter() - t0
  # First-chunk latency: prefill + the first frame call, compiled.
  t0 = time.perf_counter()
  start = prefill(params, *args)
  codes, _, _ = step(params, start, keys(1))
  jax.block_until_ready(codes)
  first_chunk_s = time.perf_counter() - t0
  seeds, all_stats = itertools.count(2), []

  def repeat(n_calls: int = calls):
    state = start  # not donated: every repeat starts from the prompt
    for _ in range(n_calls):
      codes, state, stats = step(params, state, keys(next(seeds)))
      if stats is not None:
        all_stats.append(stats)
    return codes

  return {"compile_s": compile_s, "first_chunk_s": first_chunk_s,
          "repeat": repeat, "frames_per_repeat": calls * frames_per_call,
          "unit_frames": frames_per_call, "max_units": calls,
          "stats": all_stats}


def _summed_stats(run: dict) -> dict:
  return jax.tree.map(lambda *s: sum(np.asarray(x) for x in s), *run["stats"])


def _paired(ours: dict, ours_s: float, other, unit_frames: int,
            max_units: int, repeats: int) -> dict:
  """``other(units)`` (decoding ``units * unit_frames`` frames) timed in
  alternation with our batch-1 repeat (``ours_s`` seconds alone).

  Its units per run are chosen to take about as long as our repeat, so the
  two sides of a round see the same load (on these machines the load comes
  in phases of seconds). Returns its seconds per frame, the median over
  rounds of its per-frame time over ours, that ratio's spread ((max - min)
  / median over the rounds), and the ratio of the two sides' best runs:
  the least disturbed, which moves least between runs where the load
  slows one side more than the other (memory-bound decoding more than an
  eager Python loop).
  """
  unit_s = timed(lambda: other(1), repeats=2).best
  units = int(min(max(round(ours_s / max(unit_s, 1e-9)), 1), max_units))
  p = timed_paired(ours["repeat"], lambda: other(units), repeats)
  per_frame = ours["frames_per_repeat"] / (units * unit_frames)
  ratios = [r * per_frame for r in p.ratios]
  return {"frame_s": p.other.median / (units * unit_frames),
          "ratio": p.ratio * per_frame,
          "ratio_spread": (max(ratios) - min(ratios)) / (p.ratio * per_frame),
          "ratio_of_bests": p.other.best / p.base.best * per_frame}


def _paired_run(ours: dict, ours_s: float, run: dict, repeats: int) -> dict:
  """``_paired`` for another ``_decoding_run`` (a unit is one call)."""
  return _paired(ours, ours_s, run["repeat"], run["unit_frames"],
                 run["max_units"], repeats)


def _reference_rows(config, ours, ours_s, frames, prompt_rows, repeats,
                    top_k) -> dict:
  """The released CSM's eager PyTorch loop at the same dims (torchtune's
  stack, and a lean one), each timed in alternation with ours, and our
  speedup over each."""
  if not torch_reference.available():
    return {"torch_eager_ms_per_frame": "not measured: torch is not "
                                        "installed (pip install -e .[interop])"}
  out = {}
  stacks = {"torch_eager": "lean"}
  if torch_reference.torchtune_available():
    stacks["torchtune_eager"] = "torchtune"
  for key, stack in stacks.items():
    loop = torch_reference.frame_loop(config.model, frames=frames,
                                      prompt_rows=prompt_rows,
                                      repeats=repeats, top_k=top_k,
                                      stack=stack)
    ref = _paired(ours, ours_s, loop, 1, frames, repeats)
    del loop  # its weights go before the next stack is built
    out[f"{key}_ms_per_frame"] = 1e3 * ref["frame_s"]
    out[f"speedup_vs_{key}"] = ref["ratio"]
    out[f"speedup_vs_{key}_spread"] = ref["ratio_spread"]
    out[f"speedup_vs_{key}_of_bests"] = ref["ratio_of_bests"]
  return out


def bench_generate(config, frames: int = 64, prompt_rows: int = 32,
                   frames_per_call: int | None = None,
                   top_k: int = 50,
                   compare_stacked: bool = True,
                   bandwidth_bytes: int = 1 << 30, repeats: int = 21,
                   batches=(1, 2, 4, 8), draft: int = 2,
                   model=None, reference: bool = True) -> dict:
  """Decoding speed of the generation layout (per-layer weights).

  ``frames_per_call``: frames per compiled call, by default the Generator's
  streaming chunk, so the figures are what ``generate`` does; the first
  chunk's latency is then prefill + one such call.

  With ``compare_stacked`` the training layout (stacked layers, sliced per
  step) is timed in the same run and the speedup reported. ``batches``:
  frames/s at each batch size and its ratio to batch 1; ``draft`` > 0:
  speculative depth decoding with that draft length, ms/frame at batch 1
  and its ratio to plain decoding, in the same run. ``model``: a trained
  CSM (stacked) instead of random weights: speculative decoding's speed
  depends on the acceptance, which random weights do not show.
  ``reference``: with torch installed, the released CSM's eager frame loop
  at the same dims (``torch_reference``) is timed too, and our speedup.
  With dims as large as CSM-1B's that loop takes seconds per frame: pass
  False to skip it.
  """
  from csm_jax.config.codec import frame_rate  # pylint: disable=g-import-not-at-top
  frame_seconds = 1.0 / frame_rate(config.codec)  # 80 ms for Mimi's 12.5 Hz
  if model is None:
    model = CSM(config.model, nnx.Rngs(params=0))
  params = nnx.state(model, nnx.Param)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  dtype = str(jax.tree.leaves(params)[0].dtype)
  wbytes = weight_bytes_per_frame(model)
  del params
  frames_per_call = frames_per_call or Sampling.frames_per_call
  opts = (config, frames, prompt_rows, frames_per_call, top_k)
  compute = decode.compute_dtype_for_platform(config.model.dtype)
  model = decode.with_compute_dtype(model, compute)
  stacked_s = None
  if compare_stacked:
    run = _decoding_run(model, *opts)
    stacked_s = (timed(run["repeat"], repeats=repeats, warmup=0).median
                 / run["frames_per_repeat"])
    del run  # its closure holds the stacked weights
  fast = decode.unrolled(model)
  del model  # the stacked layer weights go; the copy keeps what it shares
  ours = _decoding_run(fast, *opts)
  alone = timed(ours["repeat"], repeats=repeats, warmup=0)
  frame_s = alone.median / ours["frames_per_repeat"]
  bw = measured_bandwidth(bandwidth_bytes)
  floor_s = wbytes / bw
  out = {
      "params": n_params,
      "weight_dtype": dtype,
      "compute_dtype": jnp.dtype(compute).name,
      "compile_s": ours["compile_s"],
      "ms_per_frame_median": 1e3 * frame_s,
      "ms_per_frame_spread": alone.spread,
      "ms_per_frame_best": 1e3 * alone.best / ours["frames_per_repeat"],
      "repeats": alone.n,
      "frames_per_repeat": ours["frames_per_repeat"],
      "frame_ms_of_audio": 1e3 * frame_seconds,
      "real_time_factor": frame_s / frame_seconds,
      "first_chunk_latency_ms": 1e3 * ours["first_chunk_s"],
      "weight_bytes_per_frame": wbytes,
      "measured_bandwidth_gb_s": bw / 1e9,
      "floor_ms_per_frame": 1e3 * floor_s,
      "ratio_to_floor": frame_s / floor_s,
      "best_ratio_to_floor": alone.best / ours["frames_per_repeat"] / floor_s,
  }
  if stacked_s is not None:
    out["stacked_ms_per_frame"] = 1e3 * stacked_s
    out["speedup_vs_stacked"] = stacked_s / frame_s
  # The products' limits, timed only where a figure needs them (at CSM-1B
  # dims they allocate a second set of random weights).
  limits = (product_limits(fast, batches, draft, compute)
            if draft or any(b > 1 for b in batches) else {})
  for b in batches:
    if b == 1:
      out.update(batch1_frames_per_s=1 / frame_s, batch1_spread=alone.spread,
                 batch1_ratio_to_batch1=1.0)
      continue
    r = _paired_run(ours, alone.median, _decoding_run(fast, *opts, batch=b),
                    repeats)
    out[f"batch{b}_frames_per_s"] = b / r["frame_s"]
    out[f"batch{b}_ratio_to_batch1"] = b / r["ratio"]
    out[f"batch{b}_ratio_spread"] = r["ratio_spread"]
    out[f"batch{b}_ratio_of_bests"] = b / r["ratio_of_bests"]
    limit = limits[f"limit_batch{b}_ratio"]
    out[f"batch{b}_products_limit"] = limit
    out[f"batch{b}_of_limit"] = out[f"batch{b}_ratio_to_batch1"] / limit
  if reference:
    out.update(_reference_rows(config, ours, alone.median, frames,
                               prompt_rows, repeats, top_k))
  if draft:
    spec = _decoding_run(fast, *opts, draft=draft)
    r = _paired_run(ours, alone.median, spec, repeats)
    st = _summed_stats(spec)
    out["speculative_draft"] = draft
    out["speculative_ms_per_frame"] = 1e3 * r["frame_s"]
    out["speculative_ratio_to_plain"] = r["ratio"]
    out["speculative_ratio_spread"] = r["ratio_spread"]
    out["speculative_ratio_of_bests"] = r["ratio_of_bests"]
    out["speculative_acceptance"] = float(st["accepted"].sum()
                                          / max(st["evaluated"].sum(), 1))
    # Stats come per compiled call of ``frames_per_call`` frames.
    out["speculative_passes_per_frame"] = float(
        st["rounds"].sum() / (len(spec["stats"]) * frames_per_call))
    # A round (one verification pass and ``draft`` one-block drafts, the
    # drafter's default depth) in one-row decoder steps, and the best ratio
    # to plain this machine's products allow: every draft accepted.
    out["speculative_verify_pass_steps"] = limits["verify_pass_steps"]
    out["speculative_round_steps_predicted"] = limits["round_steps"]
    out["speculative_ratio_limit"] = limits["ratio_at_full_acceptance"]
    # The same products at the passes this run needed: what is left of the
    # measured ratio is the rounds' other work (sampling, loop, selects).
    out["speculative_ratio_predicted"] = speculative_ratio(
        limits["backbone_steps"], config.model.n_codebooks,
        out["speculative_passes_per_frame"], limits["round_steps"])
  return out
