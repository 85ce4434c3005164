"""The codec as generation sees it: numpy in, numpy out, streaming decode.

Wraps a trained ``Codec`` (``csm_jax.codec``) so that the generator and the
data pipeline need only ``encode(audio) -> (frames, levels)``,
``decode(codes) -> audio`` and ``streaming_decoder().push(codes) -> audio``.
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.io import load_codec


class CodecHandle:
  """Host-side wrapper of a split codec (one example at a time)."""

  BUCKET_SECONDS = 2.0

  def __init__(self, codec, directory: str | None = None):
    self.graphdef, self.state = nnx.split(codec)
    self.levels = int(codec.levels)
    self.codebook_size = int(codec.codebook_size)
    self.hop = int(codec.hop)
    self.sample_rate = int(codec.sample_rate)
    self.frame_rate = self.sample_rate / self.hop
    self.directory = directory

  @classmethod
  def load(cls, directory: str) -> "CodecHandle":
    codec, _ = load_codec(directory)
    return cls(codec, directory)

  def encode(self, audio: np.ndarray, n_levels: int | None = None) -> np.ndarray:
    """(samples,) float32 at ``sample_rate`` -> (ceil(samples/hop), levels).

    Audio is zero-padded to a multiple of ``BUCKET_SECONDS`` so that turns
    of many lengths share a few compiled shapes; the codec is causal, so the
    padding changes no frame that is kept.
    """
    a = np.asarray(audio, np.float32).reshape(-1)
    frames = -(-len(a) // self.hop)
    bucket = self.hop * max(1, int(self.BUCKET_SECONDS * self.frame_rate))
    padded = np.zeros((1, max(1, -(-len(a) // bucket)) * bucket), np.float32)
    padded[0, :len(a)] = a
    codes = api.encode(self.graphdef, self.state, padded, n_levels)
    return np.asarray(codes)[0, :frames]

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """(frames, n<=levels) -> (frames * hop,) float32 from the first n levels."""
    c = np.asarray(codes)[None]
    return np.asarray(api.decode(self.graphdef, self.state, c))[0]

  def streaming_decoder(self) -> "StreamingDecode":
    return StreamingDecode(self)


class StreamingDecode:
  """Decodes frames as they arrive; concatenated output equals ``decode``."""

  def __init__(self, handle: CodecHandle):
    self._dec = api.StreamingDecoder(handle.graphdef, handle.state, 1)

  def push(self, codes: np.ndarray) -> np.ndarray:
    c = np.asarray(codes)
    if len(c) == 0:
      return np.zeros((0,), np.float32)
    return np.asarray(self._dec.push(c[None]))[0]
