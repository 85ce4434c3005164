"""Generation speed against the memory-bandwidth floor, with random weights.

A decoded frame must read every backbone weight once and the depth decoder's
weights once per codebook step, so ``weight bytes per frame / bandwidth`` is
a floor on ms per frame at batch 1. The bandwidth is measured in the same run
(a large on-device reduction), and the report gives our ratio to the floor.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.inference import decode
from csm_jax.model.csm import CSM
from csm_jax.parallel.hardware import measured_bandwidth


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


def _time_decoding(model, config, frames: int, prompt_rows: int,
                   frames_per_call: int, top_k: int) -> dict:
  """Compile, first-chunk and steady-state timings for one model layout."""
  graphdef, params = nnx.split(model)
  n = config.model.n_codebooks
  max_len = min(config.model.max_seq_len, prompt_rows + frames + 8)
  temps = jnp.full((n,), 0.9, jnp.float32)

  @jax.jit
  def prefill(params, audio, text, mask, positions, segments):
    m = nnx.merge(graphdef, params)
    state = decode.init_state(m, 1, max_len)
    return decode.append_rows(m, state, audio, text, mask, positions, segments)

  @jax.jit
  def step(params, state, key):
    m = nnx.merge(graphdef, params)
    return decode.generate_frames(m, state, key, frames_per_call, temps,
                                  top_k=top_k)

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
  args = (audio, text, mask, positions, segments)

  t0 = time.perf_counter()
  state = prefill(params, *args)
  codes, _ = step(params, state, jax.random.key(0))
  jax.block_until_ready(codes)
  compile_s = time.perf_counter() - t0
  # First-chunk latency: prefill + the first frame call, compiled.
  t0 = time.perf_counter()
  state = prefill(params, *args)
  codes, state = step(params, state, jax.random.key(1))
  jax.block_until_ready(codes)
  first_chunk_s = time.perf_counter() - t0
  times = []
  key = jax.random.key(2)
  for i in range(max(frames // frames_per_call, 2)):
    t0 = time.perf_counter()
    codes, state = step(params, state, jax.random.fold_in(key, i))
    jax.block_until_ready(codes)
    times.append((time.perf_counter() - t0) / frames_per_call)
  return {"compile_s": compile_s, "first_chunk_s": first_chunk_s,
          "frame_s": statistics.median(times)}


def bench_generate(config, frames: int = 16, prompt_rows: int = 32,
                   frames_per_call: int = 1, top_k: int = 50,
                   compare_stacked: bool = True,
                   bandwidth_bytes: int = 1 << 30) -> dict:
  """Decoding speed of the generation layout (per-layer weights).

  With ``compare_stacked`` the training layout (stacked layers, sliced per
  step) is timed in the same run and the speedup reported.
  """
  from csm_jax.config.codec import frame_rate  # pylint: disable=g-import-not-at-top
  frame_seconds = 1.0 / frame_rate(config.codec)  # 80 ms for Mimi's 12.5 Hz
  model = CSM(config.model, nnx.Rngs(params=0))
  params = nnx.state(model, nnx.Param)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  dtype = str(jax.tree.leaves(params)[0].dtype)
  wbytes = weight_bytes_per_frame(model)
  del params
  opts = (config, frames, prompt_rows, frames_per_call, top_k)
  compute = decode.compute_dtype_for_platform(config.model.dtype)
  model = decode.with_compute_dtype(model, compute)
  stacked = _time_decoding(model, *opts) if compare_stacked else None
  fast = decode.unrolled(model)
  del model  # the stacked layer weights go; the copy keeps what it shares
  ours = _time_decoding(fast, *opts)
  bw = measured_bandwidth(bandwidth_bytes)
  floor_s = wbytes / bw
  frame_s = ours["frame_s"]
  out = {
      "params": n_params,
      "weight_dtype": dtype,
      "compute_dtype": jnp.dtype(compute).name,
      "compile_s": ours["compile_s"],
      "ms_per_frame_median": 1e3 * frame_s,
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
  return out
