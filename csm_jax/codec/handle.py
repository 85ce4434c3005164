"""The codec as generation sees it: numpy in, numpy out, streaming decode.

Wraps a trained ``Codec`` (``csm_jax.codec``) so that the generator and the
data pipeline need only ``encode(audio) -> (frames, levels)``,
``decode(codes) -> audio`` and ``streaming_decoder().push(codes) -> audio``.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec.io import load_codec


def padded_frames(frames: int, bucket: int) -> int:
  """``frames`` rounded up to ``bucket`` times a power of two: clips of any
  length share a handful of compiled shapes (a 30 s clip at 2 s buckets is
  one of 1, 2, 4, 8 or 16 buckets), for at most twice the frames."""
  n = max(1, -(-int(frames) // bucket))
  return bucket * (1 << (n - 1).bit_length())


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
    # Samples by which the codec's decoder lags its input (the spectral
    # family's overlap-add); ``decode`` and the streaming decoder remove it.
    self.delay = int(getattr(codec, "delay", 0))
    self.delay_frames = -(-self.delay // self.hop)
    # Frames per padding bucket of ``encode`` and ``decode``.
    self.bucket_frames = max(1, int(self.BUCKET_SECONDS * self.frame_rate))
    self.directory = directory

  @classmethod
  def load(cls, directory: str) -> "CodecHandle":
    codec, _ = load_codec(directory)
    return cls(codec, directory)

  def fingerprint(self) -> str:
    """A hash of the codec's shape and weights: equal iff it is the same codec."""
    import hashlib  # pylint: disable=g-import-not-at-top
    h = hashlib.sha256(repr((self.levels, self.codebook_size, self.hop,
                             self.sample_rate)).encode())
    for leaf in jax.tree.leaves(self.state):
      h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:16]

  def encode(self, audio: np.ndarray, n_levels: int | None = None) -> np.ndarray:
    """(samples,) float32 at ``sample_rate`` -> (ceil(samples/hop), levels).

    Audio is zero-padded to ``BUCKET_SECONDS`` times a power of two
    (``padded_frames``) so that turns of many lengths share a few compiled
    shapes; the codec is causal, so the padding changes no frame that is
    kept.
    """
    a = np.asarray(audio, np.float32).reshape(-1)
    frames = -(-len(a) // self.hop)
    padded = np.zeros((1, self.hop * padded_frames(frames,
                                                    self.bucket_frames)),
                      np.float32)
    padded[0, :len(a)] = a
    codes = api.encode(self.graphdef, self.state, padded, n_levels)
    return np.asarray(codes)[0, :frames]

  def decode(self, codes: np.ndarray) -> np.ndarray:
    """(frames, n<=levels) -> (frames * hop,) float32 from the first n levels.

    Codes are padded as in ``encode``, so clips of many lengths share a
    few compiled shapes; the decoder is causal, so the padding changes no
    sample that is kept. A
    decoder that lags (``delay``) decodes the padding's first frames too,
    and the output is shifted back into line with the encoded audio.
    """
    c = np.asarray(codes)
    frames = len(c)
    need = frames + self.delay_frames
    padded = np.zeros((padded_frames(need, self.bucket_frames), c.shape[1]),
                      c.dtype)
    padded[:frames] = c
    audio = api.decode(self.graphdef, self.state, padded[None])
    return np.asarray(audio)[0, self.delay:self.delay + frames * self.hop]

  def streaming_decoder(self) -> "StreamingDecode":
    return StreamingDecode(self)


def pieces(n: int) -> list[int]:
  """``n`` as decreasing powers of two (13 -> 8, 4, 1)."""
  return [1 << b for b in range(n.bit_length() - 1, -1, -1) if n >> b & 1]


class StreamingDecode:
  """Decodes frames as they arrive; concatenated output equals ``decode``.

  Every push is cut into power-of-two pieces, so a stream compiles at most
  one decoder step per power of two, and ``warm(n)`` compiles all of them
  up front: a shorter last chunk (the end of speech, the length cap) then
  costs no compilation at the end of an utterance.
  """

  def __init__(self, handle: CodecHandle):
    self.handle = handle
    self._dec = api.StreamingDecoder(handle.graphdef, handle.state, 1)
    # The lag still to drop from the stream's start (``CodecHandle.delay``).
    self._skip = handle.delay
    self._levels = None

  def warm(self, max_frames: int, n_levels: int | None = None) -> None:
    """Compiles the decoder steps every push of up to ``max_frames`` frames
    of ``n_levels`` codebooks (default: all) uses."""
    scratch = api.StreamingDecoder(self.handle.graphdef, self.handle.state, 1)
    n = n_levels or self.handle.levels
    size = 1
    while size <= max_frames:
      scratch.push(np.zeros((1, size, n), np.int32))
      size *= 2

  def push(self, codes: np.ndarray) -> np.ndarray:
    c = np.asarray(codes)
    if len(c) == 0:
      return np.zeros((0,), np.float32)
    self._levels = c.shape[1]
    out, start = [], 0
    for size in pieces(len(c)):
      out.append(np.asarray(self._dec.push(c[None, start:start + size]))[0])
      start += size
    audio = np.concatenate(out)
    drop = min(self._skip, len(audio))
    self._skip -= drop
    return audio[drop:]

  def flush(self) -> np.ndarray:
    """The last ``delay`` samples of what was pushed, completed with silent
    frames: pushes + flush equal ``CodecHandle.decode``."""
    if not self.handle.delay or self._levels is None:
      return np.zeros((0,), np.float32)
    tail = self.push(np.zeros((self.handle.delay_frames, self._levels),
                              np.int32))
    return tail[:self.handle.delay]
