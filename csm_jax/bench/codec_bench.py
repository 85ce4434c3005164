"""Codec speed: parameters and encode/decode real-time factors for a config.

``python -m csm_jax.bench codec --config=configs/codec.py`` (or any CSM
config: its codec). Real-time factor = compute seconds per audio second
(lower is faster), for offline encode and decode of a clip, and for both
streamed a chunk of ``--codec_chunk_frames`` code frames at a time (as
generation decodes). ``--reference_codec=ROW`` (a codec row of the size
table, e.g. ``debug``) times that codec's streaming in alternation with
this one's and prints the ratio, measured under the same load. Random
weights: speed does not depend on training.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.model import count_params, init_codec
from csm_jax.config import codec as cfg
from csm_jax.parallel.hardware import timed, timed_paired


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


def streaming_round(c, seconds: float = 4.0, chunk_frames: int = 1):
  """A callable that encodes then decodes ``seconds`` of audio as a stream
  of ``chunk_frames``-frame chunks (compiled on the first call), and the
  audio seconds it covers."""
  codec = init_codec(c)
  graphdef, state = nnx.split(codec)
  step = codec.hop * chunk_frames
  n = max(1, int(seconds * c.sample_rate) // step)
  audio = np.random.default_rng(0).standard_normal((1, n * step)).astype(
      np.float32) * 0.1

  def run():
    enc = api.StreamingEncoder(graphdef, state)
    dec = api.StreamingDecoder(graphdef, state)
    out = None
    for i in range(n):
      out = dec.push(enc.push(audio[:, i * step:(i + 1) * step]))
    return out
  run()
  return run, n * step / c.sample_rate


def bench_codec(config, seconds: float = 10.0, chunk_frames: int = 1,
                reference: str | None = None, rounds: int = 5) -> dict:
  c = config.codec if "codec" in config else config
  out = measure_rtf(c, seconds=seconds)
  ours, dur = streaming_round(c, chunk_frames=chunk_frames)
  out["streaming_chunk_ms"] = 1000.0 * chunk_frames / cfg.frame_rate(c)
  if reference is None:
    out["streaming_rtf"] = timed(ours, rounds).median / dur
    return out
  # Both stream the same duration of audio in chunks of the same duration.
  rc = cfg.codec_config(reference)
  ref_frames = max(1, round(chunk_frames * cfg.frame_rate(rc)
                            / cfg.frame_rate(c)))
  theirs, ref_dur = streaming_round(rc, seconds=dur, chunk_frames=ref_frames)
  paired = timed_paired(ours, theirs, rounds)
  out["streaming_rtf"] = paired.base.median / dur
  out[f"reference_{reference}_streaming_rtf"] = paired.other.median / ref_dur
  # > 1: the reference is slower than this codec.
  out[f"reference_{reference}_over_ours"] = (paired.ratio * dur / ref_dur)
  return out
