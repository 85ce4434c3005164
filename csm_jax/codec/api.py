"""Public functional API of the codec: jitted batched encode/decode and streaming.

Everything takes the ``(graphdef, state)`` pair from ``nnx.split(codec)``
(e.g. ``nnx.split(gan.codec)`` after training) and validates inputs on the
host, so a bad code or level count fails with a ValueError instead of
silently reading a wrong codebook row on device.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


@functools.partial(jax.jit, static_argnums=(0, 3))
def _encode(graphdef, state, audio, n_levels):
  return nnx.merge(graphdef, state).encode(audio, n_levels)


@functools.partial(jax.jit, static_argnums=(0,))
def _decode(graphdef, state, codes):
  return nnx.merge(graphdef, state).decode(codes)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _encode_step(graphdef, state, stream, audio, n_levels):
  return nnx.merge(graphdef, state).encode_step(audio, stream, n_levels)


@functools.partial(jax.jit, static_argnums=(0,))
def _decode_step(graphdef, state, stream, codes):
  return nnx.merge(graphdef, state).decode_step(codes, stream)


@functools.lru_cache(maxsize=16)
def _decode_stepper(graphdef, tree):
  """``_decode_step`` for one codec, taking its weights as a list of
  leaves: a streaming decoder calls it every few frames, and jit's cache
  lookup would otherwise hash the graph and flatten the weights' State
  in Python on every call (about a tenth of the streaming loop on CPU)."""
  @jax.jit
  def step(leaves, stream, codes):
    state = jax.tree.unflatten(tree, leaves)
    return nnx.merge(graphdef, state).decode_step(codes, stream)
  return step


def _info(graphdef, state):
  """(levels, codebook_size, hop, sample_rate) of a split codec."""
  m = nnx.merge(graphdef, state)
  return m.levels, m.codebook_size, m.hop, m.sample_rate


def _check_audio(audio) -> np.ndarray:
  a = np.asarray(audio)
  if a.ndim != 2:
    raise ValueError(f"audio must be (batch, samples), got shape {a.shape}")
  if not np.issubdtype(a.dtype, np.floating):
    raise ValueError(f"audio must be floating point, got {a.dtype}")
  if not np.all(np.isfinite(a)):
    raise ValueError("audio holds NaN or Inf samples")
  return a.astype(np.float32)


def _check_levels(n_levels, levels) -> int:
  n = levels if n_levels is None else int(n_levels)
  if not 1 <= n <= levels:
    raise ValueError(f"n_levels={n} but the codec was trained with {levels} "
                     "levels (need 1 <= n_levels <= levels)")
  return n


def _check_codes(codes, n_levels, levels, codebook_size):
  c = np.asarray(codes)
  if c.ndim != 3:
    raise ValueError(f"codes must be (batch, frames, levels), got {c.shape}")
  if not np.issubdtype(c.dtype, np.integer):
    raise ValueError(f"codes must be integers, got {c.dtype}")
  if c.shape[-1] > levels:
    raise ValueError(f"codes have {c.shape[-1]} levels but the codec was "
                     f"trained with {levels}")
  n = _check_levels(c.shape[-1] if n_levels is None else n_levels, levels)
  if n > c.shape[-1]:
    raise ValueError(f"n_levels={n} but codes hold only {c.shape[-1]} levels")
  c = c[..., :n]
  if c.size and (c.min() < 0 or c.max() >= codebook_size):
    raise ValueError(f"codes out of range: found values in [{c.min()}, "
                     f"{c.max()}], valid range is [0, {codebook_size - 1}]")
  return c.astype(np.int32)


def _init_stream(graphdef, state, batch, which):
  m = nnx.merge(graphdef, state)
  return (m.init_encoder_state(batch) if which == "enc"
          else m.init_decoder_state(batch))


def encode(graphdef, state, audio, n_levels: int | None = None,
           chunk_frames: int = 1024) -> jax.Array:
  """(B, T) audio -> (B, ceil(T / hop), n_levels) int32 codes.

  Inputs longer than ``chunk_frames`` frames run chunk by chunk through the
  streaming path (identical result) so attention memory stays bounded.
  """
  levels, _, hop, _ = _info(graphdef, state)
  n = _check_levels(n_levels, levels)
  a = _check_audio(audio)
  if a.shape[1] <= chunk_frames * hop:
    return _encode(graphdef, state, jnp.asarray(a), n)
  a = np.pad(a, ((0, 0), (0, (-a.shape[1]) % hop)))
  stream = _init_stream(graphdef, state, a.shape[0], "enc")
  out = []
  for i in range(0, a.shape[1], chunk_frames * hop):
    codes, stream = _encode_step(graphdef, state, stream,
                                 jnp.asarray(a[:, i:i + chunk_frames * hop]), n)
    out.append(codes)
  return jnp.concatenate(out, axis=1)


def decode(graphdef, state, codes, n_levels: int | None = None,
           chunk_frames: int = 1024) -> jax.Array:
  """(B, F, L) codes -> (B, F * hop) audio from the first n_levels levels
  (chunked like ``encode`` beyond ``chunk_frames`` frames)."""
  levels, size, _, _ = _info(graphdef, state)
  c = _check_codes(codes, n_levels, levels, size)
  if c.shape[1] <= chunk_frames:
    return _decode(graphdef, state, jnp.asarray(c))
  stream = _init_stream(graphdef, state, c.shape[0], "dec")
  out = []
  for i in range(0, c.shape[1], chunk_frames):
    audio, stream = _decode_step(graphdef, state, stream,
                                 jnp.asarray(c[:, i:i + chunk_frames]))
    out.append(audio)
  return jnp.concatenate(out, axis=1)


class StreamingEncoder:
  """Feeds audio of any chunk length; returns codes for each completed frame.

  Samples that do not yet fill a frame wait in a host buffer; ``flush`` pads
  them with zeros (as offline ``encode`` pads the end) and resets. Chunks of
  a fixed length compile once.
  """

  def __init__(self, graphdef, state, batch_size: int = 1,
               n_levels: int | None = None):
    self.graphdef, self.state = graphdef, state
    levels, _, self.hop, self.sample_rate = _info(graphdef, state)
    self.n_levels = _check_levels(n_levels, levels)
    self.batch_size = batch_size
    self.reset()

  def reset(self):
    self._stream = _init_stream(self.graphdef, self.state, self.batch_size,
                                "enc")
    self._buffer = np.zeros((self.batch_size, 0), np.float32)

  def push(self, audio) -> jax.Array:
    a = _check_audio(audio)
    if a.shape[0] != self.batch_size:
      raise ValueError(f"chunk batch {a.shape[0]} != {self.batch_size}")
    self._buffer = np.concatenate([self._buffer, a], axis=1)
    usable = self._buffer.shape[1] // self.hop * self.hop
    if usable == 0:
      return jnp.zeros((self.batch_size, 0, self.n_levels), jnp.int32)
    chunk, self._buffer = self._buffer[:, :usable], self._buffer[:, usable:]
    codes, self._stream = _encode_step(self.graphdef, self.state, self._stream,
                                       jnp.asarray(chunk), self.n_levels)
    return codes

  def flush(self) -> jax.Array:
    rest = (-self._buffer.shape[1]) % self.hop
    codes = self.push(np.zeros((self.batch_size, rest), np.float32))
    self.reset()
    return codes


class StreamingDecoder:
  """Feeds (B, f, n_levels) codes chunk by chunk; returns f * hop samples
  per chunk."""

  def __init__(self, graphdef, state, batch_size: int = 1,
               n_levels: int | None = None):
    self.graphdef, self.state = graphdef, state
    self.levels, self.codebook_size, self.hop, self.sample_rate = _info(
        graphdef, state)
    self.n_levels = n_levels
    self.batch_size = batch_size
    self._leaves, tree = jax.tree.flatten(state)
    self._step = _decode_stepper(graphdef, tree)
    self.reset()

  def reset(self):
    self._stream = _init_stream(self.graphdef, self.state, self.batch_size,
                                "dec")

  def push(self, codes) -> jax.Array:
    c = _check_codes(codes, self.n_levels, self.levels, self.codebook_size)
    if c.shape[0] != self.batch_size:
      raise ValueError(f"chunk batch {c.shape[0]} != {self.batch_size}")
    audio, self._stream = self._step(self._leaves, self._stream,
                                     jnp.asarray(c))
    return audio
