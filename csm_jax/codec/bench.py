"""Real-time factor of codec encode/decode on the current device.

Run: ``python -m csm_jax.codec.bench --size debug --seconds 10`` (weights are
random; speed does not depend on them). RTF = compute time / audio duration,
so below 1 is faster than real time.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec import config as cfg
from csm_jax.codec.model import count_params, init_codec


def _time(fn, repeats: int) -> float:
  jax.block_until_ready(fn())  # compile + warm up
  best = float("inf")
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best


def measure_rtf(c, seconds: float = 10.0, batch: int = 1,
                repeats: int = 3) -> dict[str, float]:
  """Offline encode and decode RTF for ``batch`` clips of ``seconds``."""
  codec = init_codec(c)
  graphdef, state = nnx.split(codec)
  n = int(seconds * c.sample_rate) // codec.hop * codec.hop
  audio = np.random.default_rng(0).standard_normal((batch, n)).astype(
      np.float32) * 0.1
  codes = api.encode(graphdef, state, audio)
  t_enc = _time(lambda: api.encode(graphdef, state, audio), repeats)
  t_dec = _time(lambda: api.decode(graphdef, state, codes), repeats)
  dur = batch * n / c.sample_rate
  return {"params": float(count_params(codec)), "audio_seconds": dur,
          "encode_rtf": t_enc / dur, "decode_rtf": t_dec / dur,
          "bitrate_bps": c.rvq.levels * np.log2(c.rvq.codebook_size)
                         * cfg.frame_rate(c)}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__)
  p.add_argument("--size", default="debug", choices=cfg.SIZES)
  p.add_argument("--seconds", type=float, default=10.0)
  p.add_argument("--batch", type=int, default=1)
  args = p.parse_args(argv)
  r = measure_rtf(cfg.codec_config(args.size), args.seconds, args.batch)
  print(f"{args.size} on {jax.devices()[0].platform}: "
        + ", ".join(f"{k}={v:.4g}" for k, v in r.items()))


if __name__ == "__main__":
  main()
