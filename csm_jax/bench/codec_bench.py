"""Codec speed: parameters and encode/decode real-time factors for a config.

Real-time factor = compute seconds per audio second (lower is faster), for
offline encode/decode of a clip and for frame-by-frame streaming decode.
Random weights: speed does not depend on training.
"""

from __future__ import annotations

from csm_jax.codec.bench import measure_rtf


def bench_codec(config, seconds: float = 10.0) -> dict:
  c = config.codec if "codec" in config else config
  return measure_rtf(c, seconds=seconds)
