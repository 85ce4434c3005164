"""Codec speed: parameters and encode/decode real-time factors for a config.

``python -m csm_jax.bench codec --config=configs/codec.py`` (or any CSM
config: its codec). Real-time factor = compute seconds per audio second
(lower is faster), for offline encode and decode of a clip. Random weights:
speed does not depend on training.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.model import count_params, init_codec
from csm_jax.config import codec as cfg
from csm_jax.parallel.hardware import timed


def measure_rtf(c, seconds: float = 10.0, batch: int = 1,
                repeats: int = 3) -> dict[str, float]:
  """Offline encode and decode RTF for ``batch`` clips of ``seconds``."""
  codec = init_codec(c)
  graphdef, state = nnx.split(codec)
  n = int(seconds * c.sample_rate) // codec.hop * codec.hop
  audio = np.random.default_rng(0).standard_normal((batch, n)).astype(
      np.float32) * 0.1
  codes = api.encode(graphdef, state, audio)
  t_enc = timed(lambda: api.encode(graphdef, state, audio), repeats)
  t_dec = timed(lambda: api.decode(graphdef, state, codes), repeats)
  dur = batch * n / c.sample_rate
  return {"params": float(count_params(codec)), "audio_seconds": dur,
          "encode_rtf": t_enc.median / dur, "decode_rtf": t_dec.median / dur,
          "encode_rtf_spread": t_enc.spread, "decode_rtf_spread": t_dec.spread,
          "bitrate_bps": c.rvq.levels * np.log2(c.rvq.codebook_size)
                         * cfg.frame_rate(c)}


def bench_codec(config, seconds: float = 10.0) -> dict:
  c = config.codec if "codec" in config else config
  return measure_rtf(c, seconds=seconds)
