"""One accelerator's figures in one run: ``python -m csm_jax.bench gpu``.

A prepared script for a short loan of one chip (it aims at under 8 minutes
on one H200 at CSM-1B dims) that writes one JSON (``--json``, also printed):

  generate   bf16 CSM-1B decoding at batch 1 and 8: ms/frame, real-time
             factor, time to first audio (prefill + the first chunk of
             frames + the codec decoding them), ratio to the HBM floor;
             speculative depth decoding on/off (random weights: its
             acceptance is not a trained model's, see docs/speed.md).
  train      a CSM-1B train step: MFU against the chip's datasheet bf16
             peak (``hardware.datasheet_peak``).
  codec      the codec's encode/decode real-time factors.

Every section is timed and written as soon as it ends, and a section that
fails is recorded with its error, so a run cut short still reports the rest.
``--dims=debug`` runs the same sections at the debug model's dims (CPU, a
minute), which is what the test exercises.
"""

from __future__ import annotations

import json
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.bench.codec_bench import measure_rtf
from csm_jax.bench.generate_bench import bench_generate
from csm_jax.bench.train_bench import bench_train
from csm_jax.codec import api
from csm_jax.codec.model import init_codec
from csm_jax.config import codec as codec_config
from csm_jax.config import preset
from csm_jax.inference import decode
from csm_jax.inference.generator import Sampling
from csm_jax.model.csm import CSM
from csm_jax.parallel.hardware import datasheet_peak, timed

# Per dims: (preset, generation frames per repeat, repeats, train batch,
# train steps, codec clip seconds, bytes read to measure the bandwidth).
DIMS = {
    "csm_1b": ("csm_1b", 64, 5, 4, 5, 10.0, 1 << 30),
    "debug": ("debug", 4, 2, 2, 1, 1.0, 1 << 24),
}


def gpu_config(dims: str):
  name, *_ = DIMS[dims]
  config = preset(name, None, model__dtype="bfloat16")
  if dims == "debug":
    config.data.seq_len = 128  # a CPU train step in seconds
  return config


def _generation(config, frames: int, repeats: int, draft: int,
                bandwidth_bytes: int) -> dict:
  model = CSM(config.model, nnx.Rngs(params=0))
  graphdef, params = nnx.split(model)
  dtype = jnp.dtype(config.model.dtype)
  if jax.default_backend() != "cpu":
    # bf16 weights: what is read per frame, and so the HBM floor.
    params = decode.cast_floating(params, dtype)
  model = nnx.merge(graphdef, params)
  fpc = Sampling.frames_per_call  # the Generator's streaming chunk
  out = bench_generate(config, frames=frames, frames_per_call=fpc,
                       compare_stacked=False, repeats=repeats,
                       batches=(1, 8), draft=draft, model=model,
                       bandwidth_bytes=bandwidth_bytes, reference=False)
  # Time to first audio: prefill + a first chunk of ``fpc`` frames (one
  # compiled call, timed above) + the codec turning that chunk into samples.
  codec = init_codec(config.codec)
  cg, cs = nnx.split(codec)
  codes = np.zeros((1, fpc, config.codec.rvq.levels), np.int32)
  dec = timed(lambda: api.decode(cg, cs, codes), repeats=3)
  out["codec_first_chunk_ms"] = 1e3 * dec.median
  out["time_to_first_audio_ms"] = (out["first_chunk_latency_ms"]
                                   + 1e3 * dec.median)
  out["batch8_real_time_factor"] = out["real_time_factor"] / out[
      "batch8_ratio_to_batch1"]
  return out


def bench_gpu(dims: str = "csm_1b", json_path: str | None = None,
              draft: int = 2) -> dict:
  """Runs the sections for ``dims``; returns (and writes) the figures."""
  if dims not in DIMS:
    raise ValueError(f"--dims must be one of {sorted(DIMS)}, got {dims!r}")
  _, frames, repeats, train_batch, train_steps, seconds, bw = DIMS[dims]
  config = gpu_config(dims)
  dev = jax.devices()[0]
  result = {"dims": dims, "device": dev.device_kind,
            "backend": jax.default_backend(),
            "datasheet_bf16_peak_flops_per_s": datasheet_peak(dev)}

  def section(name, fn):
    t0 = time.perf_counter()
    try:
      result[name] = fn()
    except Exception as e:  # pylint: disable=broad-except
      # One failing section must not lose the others' figures.
      result[name] = {"error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc(limit=4)}
    result[name + "_wall_s"] = time.perf_counter() - t0
    if json_path:
      with open(json_path, "w") as f:
        json.dump(result, f, indent=2, default=float)

  section("generate", lambda: _generation(config, frames, repeats, draft,
                                          bw))

  def train():
    c = config.copy_and_resolve_references()
    c.data.batch_size = train_batch
    return bench_train(c, steps=train_steps, warmup=1)

  section("train", train)
  section("codec", lambda: {**measure_rtf(config.codec, seconds=seconds),
                            "frame_rate_hz":
                            codec_config.frame_rate(config.codec)})
  return result
