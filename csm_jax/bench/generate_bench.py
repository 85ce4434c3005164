"""Generation speed against the memory-bandwidth floor, with random weights.

A decoded frame must read every backbone weight once and the depth decoder's
weights once per codebook step, so ``weight bytes per frame / bandwidth`` is
a floor on ms per frame at batch 1. The bandwidth is measured in the same run
(a large on-device reduction), and the report gives our ratio to the floor.

Each figure is the median of ``repeats`` timed runs of ``frames`` frames
(with their spread, (max - min) / median: the machine may be shared). The
same run also times batches 1, 2, 4, 8 (frames/s and the ratio to batch 1)
and speculative depth decoding (ms/frame and the ratio to plain decoding),
so that the ratios compare like with like.
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
                                       measured_product_chain, timed)


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


def _time_decoding(model, config, frames: int, prompt_rows: int,
                   frames_per_call: int, top_k: int, batch: int = 1,
                   repeats: int = 5, draft: int = 0) -> dict:
  """Compile, first-chunk and steady-state timings for one model layout.

  A timed repeat decodes ``frames`` frames (``frames / frames_per_call``
  compiled calls, as a stream makes them) from the same prefilled prompt,
  so every repeat does the same work (a cache that grew across repeats
  would make later ones slower); ``repeats`` of them give the median and
  spread per frame. ``draft`` > 0 decodes speculatively
  (``csm_jax.inference.speculative``); its summed stats come back under
  "stats".
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

  def one_repeat():
    state = start  # not donated: every repeat starts from the prompt
    for _ in range(calls):
      codes, state, stats = step(params, state, keys(next(seeds)))
      if stats is not None:
        all_stats.append(stats)
    return codes

  timing = timed(one_repeat, repeats=repeats, warmup=0)
  per = calls * frames_per_call
  out = {"compile_s": compile_s, "first_chunk_s": first_chunk_s,
         "frame_s": timing.median / per, "best_frame_s": timing.best / per,
         "spread": timing.spread, "repeats": timing.n,
         "frames_per_repeat": per}
  if all_stats:
    out["stats"] = jax.tree.map(lambda *s: sum(np.asarray(x) for x in s),
                                *all_stats)
  return out


def _reference_rows(config, frames, prompt_rows, repeats, top_k,
                    frame_s) -> dict:
  """The released CSM's eager PyTorch loop at the same dims (torchtune's
  stack, and a lean one), timed like ours, and our speedup over each."""
  if not torch_reference.available():
    return {"torch_eager_ms_per_frame": "not measured: torch is not "
                                        "installed (pip install -e .[interop])"}
  out = {}
  stacks = {"torch_eager": "lean"}
  if torch_reference.torchtune_available():
    stacks["torchtune_eager"] = "torchtune"
  for key, stack in stacks.items():
    ref = torch_reference.time_frames(config.model, frames=frames,
                                      prompt_rows=prompt_rows,
                                      repeats=repeats, top_k=top_k,
                                      stack=stack)
    out[f"{key}_ms_per_frame"] = 1e3 * ref["frame_s"]
    out[f"{key}_spread"] = ref["spread"]
    out[f"speedup_vs_{key}"] = ref["frame_s"] / frame_s
  return out


def bench_generate(config, frames: int = 64, prompt_rows: int = 32,
                   frames_per_call: int | None = None,
                   top_k: int = 50,
                   compare_stacked: bool = True,
                   bandwidth_bytes: int = 1 << 30, repeats: int = 9,
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
  stacked = (_time_decoding(model, *opts, repeats=repeats)
             if compare_stacked else None)
  fast = decode.unrolled(model)
  del model  # the stacked layer weights go; the copy keeps what it shares
  ours = _time_decoding(fast, *opts, repeats=repeats)
  bw = measured_bandwidth(bandwidth_bytes)
  floor_s = wbytes / bw
  frame_s = ours["frame_s"]
  out = {
      "params": n_params,
      "weight_dtype": dtype,
      "compute_dtype": jnp.dtype(compute).name,
      "compile_s": ours["compile_s"],
      "ms_per_frame_median": 1e3 * frame_s,
      "ms_per_frame_spread": ours["spread"],
      "repeats": ours["repeats"],
      "frames_per_repeat": ours["frames_per_repeat"],
      "frame_ms_of_audio": 1e3 * frame_seconds,
      "real_time_factor": frame_s / frame_seconds,
      "first_chunk_latency_ms": 1e3 * ours["first_chunk_s"],
      "weight_bytes_per_frame": wbytes,
      "measured_bandwidth_gb_s": bw / 1e9,
      "floor_ms_per_frame": 1e3 * floor_s,
      "ratio_to_floor": frame_s / floor_s,
  }
  if stacked is not None:
    out["stacked_ms_per_frame"] = 1e3 * stacked["frame_s"]
    out["speedup_vs_stacked"] = stacked["frame_s"] / frame_s
  # The products' limits, timed only where a figure needs them (at CSM-1B
  # dims they allocate a second set of random weights).
  limits = (product_limits(fast, batches, draft, compute)
            if draft or any(b > 1 for b in batches) else {})
  for b in batches:
    r = ours if b == 1 else _time_decoding(fast, *opts, batch=b,
                                           repeats=repeats)
    out[f"batch{b}_frames_per_s"] = b / r["frame_s"]
    out[f"batch{b}_spread"] = r["spread"]
    out[f"batch{b}_ratio_to_batch1"] = b * frame_s / r["frame_s"]
    if b > 1:
      limit = limits[f"limit_batch{b}_ratio"]
      out[f"batch{b}_products_limit"] = limit
      out[f"batch{b}_of_limit"] = out[f"batch{b}_ratio_to_batch1"] / limit
  if reference:
    out.update(_reference_rows(config, frames, prompt_rows, repeats, top_k,
                               frame_s))
  if draft:
    spec = _time_decoding(fast, *opts, repeats=repeats, draft=draft)
    out["speculative_draft"] = draft
    out["speculative_ms_per_frame"] = 1e3 * spec["frame_s"]
    out["speculative_spread"] = spec["spread"]
    out["speculative_ratio_to_plain"] = spec["frame_s"] / frame_s
    st = spec["stats"]
    out["speculative_acceptance"] = float(st["accepted"].sum()
                                          / max(st["evaluated"].sum(), 1))
    out["speculative_passes_per_frame"] = float(
        st["rounds"].sum() / (spec["frames_per_repeat"] * spec["repeats"]))
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
