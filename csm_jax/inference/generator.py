"""Conversational generation: prompts from context turns, streamed audio out.

``Generator`` holds the CSM weights, the text tokenizer and the codec. A
request is the text to say, the speaker, and earlier turns (text + audio).
The prompt is laid out exactly as in training (``csm_jax.data.examples.frames``),
trimmed from the oldest turn when it is too long, left-padded to a length
bucket (so prompts of similar length share one compiled prefill) and run in
one batched prefill; frames then come out of one compiled call per chunk and
are decoded by the codec's streaming decoder as they arrive.

Stopping: the all-zero end-of-speech frame, ``max_seconds``, a full cache,
or ``silence_seconds`` of decoded audio below ``silence_db`` (the reference
model is known to run on with long silent tails).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.data.examples.frames import Turn, conversation_rows, trim_context
from csm_jax.inference import decode

BUCKET = 64


def trained_length(config) -> int:
  """Rows a prompt plus its generated frames may take.

  Training examples start at position 0 and hold ``data.seq_len`` rows, so
  the model never saw a position beyond that; the cache (and so the prompt
  trimming) stops there even where ``model.max_seq_len`` is larger.
  """
  return min(config.model.max_seq_len,
             config.data.seq_len + config.model.n_prefix)


@dataclasses.dataclass
class Sampling:
  temperature: float = 0.9
  top_k: int = 50
  top_p: float = 1.0
  codebook_temperatures: Sequence[float] | None = None  # one per codebook
  seed: int = 0
  max_seconds: float = 10.0
  # No end-of-speech frame before this: codebook 0 skips code 0 until then
  # (as min_new_tokens masks the end token in text generation).
  min_seconds: float = 0.0
  silence_seconds: float = 2.0
  silence_db: float = -50.0
  n_levels: int | None = None  # adaptive quality: only the first k codebooks
  frames_per_call: int = 4


@dataclasses.dataclass
class ContextTurn:
  speaker: int
  text: str
  audio: np.ndarray | None = None  # float32 mono at the codec's rate
  codes: np.ndarray | None = None  # or already-encoded frames (F, levels)


@dataclasses.dataclass
class Chunk:
  codes: np.ndarray  # (frames, n_codebooks)
  audio: np.ndarray  # float32 samples
  elapsed_s: float  # since the request started


class Generator:
  """CSM generation with a codec and tokenizer; see the module docstring."""

  def __init__(self, config, graphdef, params, tokenizer, codec,
               weight_dtype: str | None = "auto"):
    self.config, self.tokenizer, self.codec = config, tokenizer, codec
    # Decoding runs on per-layer weights (decode.unrolled) and computes in
    # f32 on CPU (decode.compute_dtype_for_platform). ``weight_dtype``:
    # "auto" widens stored bf16 weights on CPU too, a dtype name casts the
    # weights to it, None keeps them as given.
    if weight_dtype == "auto":
      params = decode.params_for_platform(params)
    elif weight_dtype is not None:
      params = decode.cast_floating(params, jnp.dtype(weight_dtype))
    fast = decode.unrolled(
        nnx.merge(graphdef, params),
        decode.compute_dtype_for_platform(config.model.dtype))
    self.graphdef, self.params = nnx.split(fast)
    m = config.model
    self.n = m.n_codebooks
    self.max_len = trained_length(config)
    if codec is not None and codec.levels < self.n:
      raise ValueError(f"the codec has {codec.levels} levels but the model "
                       f"predicts {self.n} codebooks")
    self.frame_seconds = 1.0 / codec.frame_rate if codec else 0.08
    self._prefill = jax.jit(self._prefill_fn)
    self._steps = {}

  # -- compiled pieces --------------------------------------------------------
  def _prefill_fn(self, params, rows):
    model = nnx.merge(self.graphdef, params)
    b = rows["segment_ids"].shape[0]
    state = decode.init_state(model, b, self.max_len)
    return decode.append_rows(model, state, rows["audio_tokens"],
                              rows["text_tokens"], rows["mask"],
                              rows["positions"], rows["segment_ids"])

  def _step(self, frames: int, top_k: int, top_p: float, n_levels):
    key = (frames, top_k, top_p, n_levels)
    if key not in self._steps:
      def fn(params, state, rng, temps, allow_eos):
        model = nnx.merge(self.graphdef, params)
        return decode.generate_frames(model, state, rng, frames, temps, top_k,
                                      top_p, n_levels, allow_eos)
      self._steps[key] = jax.jit(fn)
    return self._steps[key]

  # -- prompts ------------------------------------------------------------------
  def _encode(self, turn: ContextTurn) -> np.ndarray:
    if turn.codes is not None:
      return np.asarray(turn.codes)[:, :self.n]
    if turn.audio is None:
      raise ValueError(f"context turn of speaker {turn.speaker} has neither "
                       "audio nor codes")
    return np.asarray(self.codec.encode(turn.audio))[:, :self.n]

  def prompt_rows(self, text: str, speaker: int,
                  context: Sequence[ContextTurn], reserve: int) -> dict:
    turns = [Turn(np.asarray(self.tokenizer.encode_turn(t.speaker, t.text)),
                  self._encode(t)) for t in context]
    current = Turn(np.asarray(self.tokenizer.encode_turn(speaker, text)), None)
    kept = trim_context(turns, current, self.max_len, reserve=reserve)
    return conversation_rows(kept + [current], self.n)

  def _batch(self, prompts: list[dict], reserve: int) -> dict:
    """Left-pads prompts to one bucketed length (padding is segment 0).

    The bucket never eats into the ``reserve`` rows kept for generated
    frames: near the end of the cache the prompt is padded less.
    """
    longest = max(len(p["positions"]) for p in prompts)
    t = max(longest, min(self.max_len - reserve,
                         -(-longest // BUCKET) * BUCKET))
    out = {}
    for k in prompts[0]:
      rows = []
      for p in prompts:
        pad = t - len(p[k])
        rows.append(np.pad(p[k], [(pad, 0)] + [(0, 0)] * (p[k].ndim - 1)))
      out[k] = jnp.asarray(np.stack(rows))
    return out

  # -- generation ---------------------------------------------------------------
  def stream(self, text: str, speaker: int,
             context: Sequence[ContextTurn] = (),
             sampling: Sampling = Sampling()) -> Iterator[Chunk]:
    """Yields chunks of (codes, audio) for one utterance as they are made."""
    for chunks in self.stream_batch([(text, speaker, context)], sampling):
      if chunks[0] is not None:
        yield chunks[0]

  def stream_batch(self, requests, sampling: Sampling = Sampling()):
    """Several prompts at once; yields a list (None for finished ones)."""
    t0 = time.perf_counter()
    s = sampling
    max_frames = max(1, int(round(s.max_seconds / self.frame_seconds)))
    reserve = min(max_frames, self.max_len // 2)
    prompts = [self.prompt_rows(t, spk, ctx, reserve=reserve)
               for t, spk, ctx in requests]
    batch = self._batch(prompts, reserve)
    state = self._prefill(self.params, batch)
    budget = min(max_frames, self.max_len - batch["positions"].shape[1])
    temps = np.full((self.n,), s.temperature, np.float32)
    if s.codebook_temperatures is not None:
      temps[:len(s.codebook_temperatures)] = s.codebook_temperatures
    step = self._step(s.frames_per_call, s.top_k, s.top_p, s.n_levels)
    decoders = [self.codec.streaming_decoder() if self.codec else None
                for _ in requests]
    done = [False] * len(requests)
    silent = [0] * len(requests)
    silence_frames = int(s.silence_seconds / self.frame_seconds)
    # One key per request, the same for every request: an utterance comes
    # out the same alone or inside a batch.
    keys = jax.vmap(jax.random.key)(jnp.full((len(requests),), s.seed,
                                             jnp.uint32))
    min_frames = int(round(s.min_seconds / self.frame_seconds))
    made = 0
    while made < budget and not all(done):
      # Always a whole chunk: a shorter last call would compile a new step
      # (seconds) to save a few frames; the surplus is dropped.
      frames = min(s.frames_per_call, budget - made)
      allow = made + np.arange(s.frames_per_call) >= min_frames
      codes, state = step(self.params, state,
                          jax.vmap(lambda k: jax.random.fold_in(k, made))(keys),
                          jnp.asarray(temps), jnp.asarray(allow))
      codes = np.asarray(codes).transpose(1, 0, 2)[:, :frames]  # (B, F, N)
      made += frames
      out = []
      for b, c in enumerate(codes):
        if done[b]:
          out.append(None)
          continue
        eos = np.flatnonzero(~c.any(axis=1))
        if len(eos):
          c, done[b] = c[:eos[0]], True
        audio = (decoders[b].push(c) if decoders[b] is not None and len(c)
                 else np.zeros((0,), np.float32))
        if decoders[b] is not None and len(c):
          silent[b] = self._silent_run(audio, len(c), silent[b], s.silence_db)
          if silent[b] >= silence_frames:
            done[b] = True
        out.append(Chunk(c, audio, time.perf_counter() - t0))
      yield out

  def _silent_run(self, audio, n_frames, run, db):
    per = len(audio) // max(n_frames, 1)
    for f in range(n_frames):
      seg = audio[f * per:(f + 1) * per]
      level = 10 * np.log10(np.mean(np.square(seg)) + 1e-12) if len(seg) else -200
      run = run + 1 if level < db else 0
    return run

  def generate(self, text: str, speaker: int,
               context: Sequence[ContextTurn] = (),
               sampling: Sampling = Sampling()) -> dict:
    """Whole utterance: {"audio", "codes", "first_chunk_s", "seconds"}."""
    chunks = list(self.stream(text, speaker, context, sampling))
    codes = (np.concatenate([c.codes for c in chunks]) if chunks
             else np.zeros((0, self.n), np.int32))
    audio = (np.concatenate([c.audio for c in chunks]) if chunks
             else np.zeros((0,), np.float32))
    return {"audio": audio, "codes": codes,
            "first_chunk_s": chunks[0].elapsed_s if chunks else 0.0,
            "compute_s": chunks[-1].elapsed_s if chunks else 0.0,
            "seconds": len(codes) * self.frame_seconds}
