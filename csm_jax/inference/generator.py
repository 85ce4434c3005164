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

A model with the prosody stream (``model.prosody``) is controllable: the
turn's style (``Sampling.emotion`` + ``intensity``, or a raw ``style`` id;
otherwise sampled from the model), a ``Sketch`` stage 1 follows instead of
sampling (no end of speech before the sketch ends; frames after it are
free), and ``pace``. Context turns get their prosody tokens from their
audio, by the same extraction as training. Every chunk reports the plan
its frames followed. The same holds on the aligned text stream
(``inference.aligned``, ``inference.aligned_prosody``), text streamed in
included.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.audio.clip_memo import ClipMemo
from csm_jax.config import memory as memory_config
from csm_jax.config import prosody as prosody_config
from csm_jax.config import text_stream
from csm_jax.data import prosody_tokens
from csm_jax.data.examples.frames import (ProsodyLayout, Turn,
                                         conversation_rows, trim_context)
from csm_jax.data.prosody_tokens import ProsodyError
from csm_jax.inference import aligned, decode, speculative
from csm_jax.inference.chunk import Chunk
from csm_jax.inference.memory import (MemoryTurn, MemoryWriter, memory_turn,
                                      stack_states)
from csm_jax.inference.prosody_control import Sketch, check_pace
from csm_jax.inference.sampling import fold_rows

BUCKET = 64


def trained_length(config) -> int:
  """Rows a prompt plus its generated frames may take.

  Training examples start at position 0 and hold ``data.seq_len`` rows, so
  the model never saw a position beyond that; the cache (and so the prompt
  trimming) stops there even where ``model.max_seq_len`` is larger.
  """
  return min(config.model.max_seq_len,
             config.data.seq_len + config.model.n_prefix)

# Context clips whose codes a generator keeps (``Generator._encode``).
_ENCODED_CLIPS = 256


def cache_length(config, trained: int, prefix_slots: int) -> int:
  """Rows the decoding cache holds: ``trained``, or twice it for a model
  whose every row attends within a window shorter than ``trained``.

  Attention sees positions only relative to each other (RoPE), and in such
  a model only the last ``window`` of them, so every attention of a row
  past the trained length meets distances training showed it (in training
  too, rows farther than the window from the start could not attend to
  it). What is new to the model is that its deeper layers no longer reach
  the start of the conversation at all: the long response's per-third
  scores (``eval.long_form``) measure what that costs. The extra rows are
  room for long responses; prompts are still trimmed to ``trained``. A
  memory prefix is visible from every row (at a distance that grows with
  the row), so a model with one keeps ``trained``.
  """
  m = config.model
  if prefix_slots or max(m.text_window, m.audio_window) >= trained:
    return trained
  return 2 * trained


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
  # The prosody stream's controls (two-stage models only, see the module
  # docstring); the defaults leave every prosody token to the model.
  emotion: str | None = None
  intensity: float = 0.5       # in [0, 1], with ``emotion``
  style: int | None = None     # a raw style id instead of emotion/intensity
  prosody: Sketch | None = None
  pace: float = 1.0            # rate multiplier
  prosody_temperature: float | None = None  # default: ``temperature``
  # Speculative depth decoding (csm_jax.inference.speculative): codes
  # drafted per round by the decoder's first block; 0 = off. Same output
  # distribution (same codes when greedy), fewer full decoder passes.
  speculative: int = 0
  # Aligned text stream (inference.aligned): the advance head's
  # temperature, and how long speech may run on once the text is spoken.
  advance_temperature: float = 1.0
  tail_seconds: float = 0.2

  def controls_prosody(self) -> bool:
    return (self.emotion is not None or self.style is not None
            or self.prosody is not None or self.pace != 1.0)


@dataclasses.dataclass
class Control:
  """One request's prosody controls (``Sampling``'s fields, per request)."""

  emotion: str | None = None
  intensity: float = 0.5
  style: int | None = None
  sketch: Sketch | None = None
  # End the utterance where the sketch ends (a plan of the model's own,
  # paced); otherwise frames after the sketch are free.
  end_with_sketch: bool = False


@dataclasses.dataclass
class ContextTurn:
  speaker: int
  text: str
  audio: np.ndarray | None = None  # float32 mono at the codec's rate
  codes: np.ndarray | None = None  # or already-encoded frames (F, levels)
  # (phoneme symbols, start seconds) eSpeak spoke, for a model on the
  # aligned text stream (else its tokens are spread evenly over the turn).
  alignment: tuple | None = None
  # Its emotion, for a model with the emotion tag (None: unknown).
  emotion: str | None = None


class Generator:
  """CSM generation with a codec and tokenizer; see the module docstring."""

  def __init__(self, config, graphdef, params, tokenizer, codec,
               weight_dtype: str | None = "auto",
               prosody_bins: prosody_tokens.ProsodyBins | None = None):
    self.config, self.tokenizer, self.codec = config, tokenizer, codec
    # Tokens <-> contours of the prosody stream (None when it is off).
    self.bins = prosody_bins if prosody_config.enabled(config.model) else None
    if prosody_config.enabled(config.model) and prosody_bins is None:
      raise ProsodyError("the model has the prosody stream on but no prosody "
                         "stats were given (the training corpus's stats "
                         "file, data.prosody_cache)")
    self.layout = None if self.bins is None else ProsodyLayout(
        self.bins.unvoiced, self.bins.unknown_style)
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
    # The dual memory (model.memory): each request's memory (given, or
    # written from its context turns) is its prompt's prefix, in P extra
    # cache slots before the prompt.
    self.memory = (MemoryWriter(config, self.graphdef, self.params)
                   if memory_config.enabled(config.model) else None)
    self.prefix_slots = 0 if self.memory is None else self.memory.n_prefix
    m = config.model
    self.n = m.n_codebooks
    self.max_len = trained_length(config)
    self.cache_len = cache_length(config, self.max_len, self.prefix_slots)
    if codec is not None and codec.levels < self.n:
      raise ValueError(f"the codec has {codec.levels} levels but the model "
                       f"predicts {self.n} codebooks")
    self.frame_seconds = 1.0 / codec.frame_rate if codec else 0.08
    self._prefill = jax.jit(self._prefill_fn, static_argnames=("cache_rows",))
    self._style = jax.jit(self._style_fn)
    self._steps = {}
    self._warm = set()
    self._encoded = ClipMemo(_ENCODED_CLIPS)   # context clips' codes

  # -- compiled pieces --------------------------------------------------------
  def _prefill_fn(self, params, rows, prefix=None, cache_rows=None):
    """The prompt in a fresh cache of ``cache_rows`` (default: the trained
    length) plus the memory prefix's slots."""
    model = nnx.merge(self.graphdef, params)
    b = rows["segment_ids"].shape[0]
    state = decode.init_state(model, b, (cache_rows or self.max_len)
                              + self.prefix_slots)
    column = (tuple(rows[k] for k in ("prosody_f0", "prosody_energy",
                                      "prosody_style", "prosody_mask"))
              if "prosody_f0" in rows else None)
    return decode.append_rows(model, state, rows["audio_tokens"],
                              rows["text_tokens"], rows["mask"],
                              rows["positions"], rows["segment_ids"],
                              prefix=prefix, prosody=column)

  def _style_fn(self, params, state, keys, given, temperature):
    model = nnx.merge(self.graphdef, params)
    return decode.choose_style(model, state, keys, given, temperature)

  def _step(self, frames: int, top_k: int, top_p: float, n_levels,
            speculative_draft: int = 0):
    key = (frames, top_k, top_p, n_levels, speculative_draft)
    if key not in self._steps:
      def fn(params, state, rng, temps, allow_eos, plan, ptemp):
        model = nnx.merge(self.graphdef, params)
        if speculative_draft:
          return speculative.generate_frames(
              model, state, rng, frames, temps, top_k, top_p, n_levels,
              allow_eos, plan, ptemp, draft=speculative_draft)
        return decode.generate_frames(model, state, rng, frames, temps, top_k,
                                      top_p, n_levels, allow_eos, plan, ptemp)
      self._steps[key] = jax.jit(fn)
    return self._steps[key]

  def aligned_step(self, rows: int, top_k: int, top_p: float,
                   n_levels: int | None = None):
    """The compiled rows of the aligned text stream (``inference.aligned``)."""
    key = ("aligned", rows, top_k, top_p, n_levels)
    if key not in self._steps:
      lead = text_stream.lead(self.config.model)
      ahead = text_stream.lookahead(self.config.model)

      def fn(params, state, rng, temps, tokens, n_tokens, adv_temp, allow,
             plan=None, ptemp=None):
        model = nnx.merge(self.graphdef, params)
        return aligned.generate_rows(model, state, rng, rows, temps, top_k,
                                     top_p, tokens, n_tokens, lead, adv_temp,
                                     ahead, allow, n_levels, plan, ptemp)
      self._steps[key] = jax.jit(fn)
    return self._steps[key]

  # -- prompts ------------------------------------------------------------------
  def _encode(self, turn: ContextTurn) -> np.ndarray:
    if turn.codes is not None:
      return np.asarray(turn.codes)[:, :self.n]
    if turn.audio is None:
      raise ValueError(f"context turn of speaker {turn.speaker} has neither "
                       "audio nor codes")
    # A conversation hands its history back every turn: each clip is
    # encoded once (the codec is deterministic).
    a = np.asarray(turn.audio, np.float32)
    return self._encoded.get(
        a, lambda: np.asarray(self.codec.encode(a))[:, :self.n])

  def _context_prosody(self, turn: ContextTurn, codes: np.ndarray):
    """A context turn's prosody tokens, by the training extraction."""
    audio = turn.audio
    if audio is None or not len(audio):
      audio = self.codec.decode(codes)
    contour = prosody_tokens.frame_contour(audio, self.codec.sample_rate,
                                           self.codec.frame_rate, len(codes))
    return self.bins.tokens(contour, turn.speaker)

  def prompt_rows(self, text: str, speaker: int,
                  context: Sequence[ContextTurn], reserve: int) -> dict:
    turns = []
    for t in context:
      codes = self._encode(t)
      turns.append(Turn(
          np.asarray(self.tokenizer.encode_turn(t.speaker, t.text)), codes,
          prosody=(None if self.bins is None
                   else self._context_prosody(t, codes))))
    current = Turn(np.asarray(self.tokenizer.encode_turn(speaker, text)), None)
    kept = trim_context(turns, current, self.max_len, reserve=reserve)
    return conversation_rows(kept + [current], self.n, prosody=self.layout)

  def memory_turn(self, turn: ContextTurn) -> MemoryTurn:
    """A context turn as the memory writes it (codes encoded if needed)."""
    return memory_turn(self.config, self.tokenizer, turn.speaker, turn.text,
                       self._encode(turn), turn.audio,
                       self.codec.sample_rate if self.codec else 0,
                       getattr(turn, "emotion", None))

  def _memory_prefix(self, requests):
    """The prefix vectors of each request's memory (None without memory):
    a request's fourth item (a one-conversation ``MemoryState``), or the
    memory of its context turns, all of them (the prompt keeps only the
    newest that fit, as in training)."""
    if self.memory is None:
      return None
    states = []
    for req in requests:
      given = req[3] if len(req) > 3 else None
      if given is None:
        given = self.memory.of_turns([[self.memory_turn(t) for t in req[2]]])
      self.memory.check(given, 1)
      states.append(given)
    return self.memory.prefix(stack_states(states))

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
  def stream_text(self, pieces: Iterable[str], speaker: int,
                  context: Sequence[ContextTurn] = (),
                  sampling: Sampling = Sampling(),
                  control: Control | None = None) -> Iterator[Chunk]:
    """``stream`` with the text arriving in ``pieces`` while audio streams
    out (an aligned-stream model only, ``inference.aligned``): the same
    frames as the whole text, given the same seed."""
    aligned.check_streaming(self.config)
    feed = aligned.TextFeed(self.tokenizer, pieces)
    for chunks in self.stream_batch([(None, speaker, context)], sampling,
                                    None if control is None else [control],
                                    feeds=[feed]):
      if chunks[0] is not None:
        yield chunks[0]

  def stream(self, text: str, speaker: int,
             context: Sequence[ContextTurn] = (),
             sampling: Sampling = Sampling(),
             control: Control | None = None) -> Iterator[Chunk]:
    """Yields chunks of (codes, audio) for one utterance as they are made."""
    for chunks in self.stream_batch([(text, speaker, context)], sampling,
                                    None if control is None else [control]):
      if chunks[0] is not None:
        yield chunks[0]

  # -- prosody controls -------------------------------------------------------
  def _style_ids(self, controls: Sequence[Control]) -> np.ndarray:
    """Each request's given style id, or -1 (sampled by the model)."""
    out = []
    for c in controls:
      if c.style is not None:
        if not 0 <= c.style < self.bins.unknown_style:
          raise ProsodyError(
              f"style token {c.style} is out of range: the model has style "
              f"ids 0..{self.bins.unknown_style - 1}")
        out.append(int(c.style))
      elif c.emotion is not None:
        out.append(self.bins.style_id(self.bins.emotion_index(c.emotion),
                                      self.bins.intensity_bin(c.intensity)))
      else:
        out.append(-1)
    return np.asarray(out, np.int32)

  def _controls(self, n: int, s: Sampling, controls) -> list[Control]:
    if controls is None:
      controls = [Control(s.emotion, s.intensity, s.style, s.prosody)] * n
    if len(controls) != n:
      raise ValueError(f"{len(controls)} controls for {n} requests")
    tagged = text_stream.emotion_tag(self.config.model)
    if self.bins is None and (
        s.style is not None or s.prosody is not None or s.pace != 1.0
        or (not tagged and s.emotion is not None) or any(
            c.style is not None or c.sketch is not None
            or (not tagged and c.emotion is not None) for c in controls)):
      raise ProsodyError(
          "style, prosody sketches and pace need a model trained with the "
          "prosody stream (config.model.prosody.enabled), and an emotion "
          "needs that or the emotion tag (model.emotion_tag); this model "
          "has neither")
    if tagged:
      for c in controls:   # an unknown name fails here, in one line
        self.tokenizer.emotion_token_id(c.emotion)
    check_pace(s.pace)
    return list(controls)

  def _plan_arrays(self, sketches, total: int, b: int):
    """(F, B) arrays of the sketches stage 1 follows (``plan_frame``)."""
    plan = {"f0": np.zeros((total, b), np.int32),
            "energy": np.zeros((total, b), np.int32),
            "given_f0": np.zeros((total, b), bool),
            "given_energy": np.zeros((total, b), bool)}
    for j, sk in enumerate(sketches):
      if sk is None:
        continue
      for key, values in (("f0", sk.f0), ("energy", sk.energy)):
        if values is not None:
          k = min(len(values), total)
          plan[key][:k, j] = values[:k]
          plan["given_" + key][:k, j] = True
    return plan

  # -- generation ---------------------------------------------------------------
  def stream_batch(self, requests, sampling: Sampling = Sampling(),
                   controls: Sequence[Control] | None = None, feeds=None):
    """Several prompts at once; yields a list (None for finished ones).

    ``controls`` gives each request its own prosody controls (default: the
    ones of ``sampling`` for all); ``feeds`` (aligned stream): each
    request's text arriving as it comes (``aligned.TextFeed``).
    """
    s = sampling
    controls = self._controls(len(requests), s, controls)
    run = self._stream
    if text_stream.aligned(self.config.model):
      run = functools.partial(aligned.stream, self, feeds=feeds,
                              emotions=[c.emotion for c in controls])
    if self.bins is None:
      yield from run(requests, s, None, None)
      return
    styles = self._style_ids(controls)
    sketches = [c.sketch for c in controls]
    if s.pace != 1.0 and any(sk is None for sk in sketches):
      if feeds is not None:
        raise aligned.TextStreamError(
            "--pace without a sketch plans the whole utterance before "
            "speaking it; give the whole text, or a sketch to pace")
      # No sketch to pace: the model's own plan, sampled first (no audio),
      # is paced and followed. The second pass keeps the style it chose.
      own = [[] for _ in requests]
      chosen = list(styles)
      for chunks in run(requests, s, styles, sketches, audio=False):
        for j, c in enumerate(chunks):
          if c is not None:
            own[j].append(c.prosody)
            chosen[j] = chosen[j] if c.style is None else c.style
      styles = np.asarray(chosen, np.int32)
      for j, sk in enumerate(sketches):
        frames = np.concatenate(own[j]) if own[j] else np.zeros((0, 2))
        if sk is None and len(frames):
          sketches[j] = Sketch(frames[:, 0].astype(np.int32),
                               frames[:, 1].astype(np.int32))
          # The first pass ended speech there: so does the paced plan.
          controls[j] = dataclasses.replace(controls[j], end_with_sketch=True)
    sketches = [None if sk is None else sk.paced(s.pace) for sk in sketches]
    stop_at = [c.end_with_sketch and sk is not None
               for c, sk in zip(controls, sketches)]
    yield from run(requests, s, styles, sketches, stop_at=stop_at)

  def cache_rows(self, prompt_rows: int, s: Sampling, extra: int = 0) -> int:
    """The cache a request gets: the trained length where its prompt and
    the frames it may generate (plus ``extra`` rows) fit, else the longer
    ``cache_len`` (a second compiled shape, paid only by long requests)."""
    if prompt_rows + self.max_frames(s) + extra <= self.max_len:
      return self.max_len
    return self.cache_len

  def reserve_frames(self, s: Sampling) -> int:
    """Rows a prompt leaves free for the frames ``s`` may generate."""
    return min(self.max_frames(s), self.max_len // 2)

  def max_frames(self, s: Sampling) -> int:
    return max(1, int(round(s.max_seconds / self.frame_seconds)))

  def _stream(self, requests, s: Sampling, styles, sketches,
              audio: bool = True, stop_at=None, state=None, final=None):
    """The decoding loop; ``state``: a prepared generation state (prompt
    already in the cache, ``prefix_cache``) instead of a prefill of the
    requests; ``final`` (a dict) receives the state after the last chunk."""
    t0 = time.perf_counter()
    max_frames = self.max_frames(s)
    if state is None:
      reserve = self.reserve_frames(s)
      prompts = [self.prompt_rows(t, spk, ctx, reserve=reserve)
                 for t, spk, ctx, *_ in requests]
      batch = self._batch(prompts, reserve)
      state = self._prefill(
          self.params, batch, self._memory_prefix(requests),
          cache_rows=self.cache_rows(batch["positions"].shape[1], s))
    budget = min(max_frames, decode.cache_size(state) - int(state["length"]))
    temps = np.full((self.n,), s.temperature, np.float32)
    if s.codebook_temperatures is not None:
      temps[:len(s.codebook_temperatures)] = s.codebook_temperatures
    step = self._step(s.frames_per_call, s.top_k, s.top_p, s.n_levels,
                      s.speculative)
    levels = s.n_levels or self.n
    decoders = [self.codec.streaming_decoder() if self.codec and audio
                else None for _ in requests]
    if decoders and decoders[0] is not None and hasattr(decoders[0], "warm") \
        and (s.frames_per_call, s.n_levels) not in self._warm:
      # Every chunk size the stream can push, compiled before the first
      # chunk: a short last chunk would otherwise stall the end of speech.
      decoders[0].warm(s.frames_per_call, s.n_levels or self.n)
      self._warm.add((s.frames_per_call, s.n_levels))
    done = [False] * len(requests)
    silent = [0] * len(requests)
    silence_frames = int(s.silence_seconds / self.frame_seconds)
    # One key per request, the same for every request: an utterance comes
    # out the same alone or inside a batch.
    keys = jax.vmap(jax.random.key)(jnp.full((len(requests),), s.seed,
                                             jnp.uint32))
    min_frames = int(round(s.min_seconds / self.frame_seconds))
    fpc = s.frames_per_call
    plan, chosen, ptemp = None, None, None
    # No end of speech while a sketch lasts (its length is part of the plan).
    no_end = np.zeros((len(requests),), np.int64)
    if self.bins is not None:
      ptemp = jnp.float32(s.temperature if s.prosody_temperature is None
                          else s.prosody_temperature)
      state = self._style(
          self.params, state,
          fold_rows(keys, 1 << 20),
          jnp.asarray(styles), ptemp)
      chosen = np.asarray(state["style"])
      plan = self._plan_arrays(sketches, budget + fpc, len(requests))
      no_end = np.asarray([0 if sk is None else len(sk) for sk in sketches])
    # Requests whose utterance stops where their sketch ends.
    stop = [len(sk) if stop_at and stop_at[j] and sk is not None else None
            for j, sk in enumerate(sketches or [None] * len(requests))]
    made = 0
    while made < budget and not all(done):
      # Always a whole chunk: a shorter last call would compile a new step
      # (seconds) to save a few frames; the surplus is dropped.
      frames = min(fpc, budget - made)
      idx = made + np.arange(fpc)
      allow = (idx[:, None] >= min_frames) & (idx[:, None] >= no_end[None])
      given = (None if plan is None else
               {k: jnp.asarray(v[made:made + fpc]) for k, v in plan.items()})
      # Host arrays go to the compiled step as they are (one transfer
      # inside jit's dispatch, not a jnp.asarray dispatch each).
      out = step(self.params, state, fold_rows(keys, made), temps, allow,
                 given, ptemp)
      codes, ends, state = out[:3]
      codes = np.asarray(codes).transpose(1, 0, 2)[:, :frames]  # (B, F, N)
      ends = np.asarray(ends).T[:, :frames]                     # (B, F)
      tokens = (None if len(out) < 4 else
                np.stack([np.asarray(t).T[:, :frames] for t in out[3]], -1))
      made += frames
      chunk_out = []
      for b, c in enumerate(codes):
        if done[b]:
          chunk_out.append(None)
          continue
        # Only the levels generated go to the codec (and to the caller).
        c = c[:, :levels]
        tok = None if tokens is None else tokens[b]
        eos = np.flatnonzero(ends[b])
        if stop[b] is not None and made >= stop[b]:
          # The plan's end is this utterance's end of speech.
          cut = stop[b] - (made - frames)
          eos = np.asarray([cut]) if not len(eos) else np.minimum(eos, cut)
        if len(eos):
          tok = None if tok is None else tok[:eos[0]]
        c, pcm, silent[b], ended = self.push_frames(
            c, eos, decoders[b], silent[b], s, silence_frames,
            last=made >= budget)
        done[b] = done[b] or ended
        chunk_out.append(Chunk(c, pcm, time.perf_counter() - t0,
                               eos=bool(len(eos)), prosody=tok,
                               style=None if chosen is None
                               else int(chosen[b])))
      if final is not None:
        final.update(state=state, made=made)
      yield chunk_out

  def decode_from(self, state: dict, request, sampling: Sampling,
                  final: dict | None = None):
    """Chunks of one request whose prompt is already in ``state`` (a
    conversation's kept cache, ``inference.prefix_cache``); ``final``
    receives the state after the last chunk. Models without the prosody
    stream only."""
    if self.bins is not None:
      raise ProsodyError("a kept prompt cache does not hold the prosody "
                         "stream's columns; prefill instead")
    self._controls(1, sampling, None)
    yield from self._stream([request], sampling, None, None, state=state,
                            final=final)

  def push_frames(self, c, eos, decoder, silent: int, s: Sampling,
                  silence_frames: int, last: bool = False):
    """One request's frames ``c`` of a chunk, cut at the first end of
    speech in ``eos`` (frame indices) and decoded to audio; the run of
    silent frames is updated. ``last``: no frames follow (the length cap).
    Returns (codes, pcm, silent run, ended)."""
    ended = bool(len(eos))
    if ended:
      c = c[:eos[0]]
    pcm = (decoder.push(c) if decoder is not None and len(c)
           else np.zeros((0,), np.float32))
    if decoder is not None and len(c):
      silent = self._silent_run(pcm, len(c), silent, s.silence_db)
      ended = ended or silent >= silence_frames
    if (ended or last) and decoder is not None and hasattr(decoder,
                                                           "flush"):
      # A lagging codec decoder still holds the utterance's last samples.
      pcm = np.concatenate([pcm, decoder.flush()])
    return c, pcm, silent, ended

  def _silent_run(self, audio, n_frames, run, db):
    per = len(audio) // max(n_frames, 1)
    for f in range(n_frames):
      seg = audio[f * per:(f + 1) * per]
      level = 10 * np.log10(np.mean(np.square(seg)) + 1e-12) if len(seg) else -200
      run = run + 1 if level < db else 0
    return run

  def generate(self, text: str, speaker: int,
               context: Sequence[ContextTurn] = (),
               sampling: Sampling = Sampling(),
               control: Control | None = None) -> dict:
    """Whole utterance: {"audio", "codes", "first_chunk_s", "seconds"}, and
    with the prosody stream the plan followed ("prosody", (frames, 2) F0 and
    energy ids) and the turn's "style" id."""
    chunks = list(self.stream(text, speaker, context, sampling, control))
    codes = (np.concatenate([c.codes for c in chunks]) if chunks
             else np.zeros((0, sampling.n_levels or self.n), np.int32))
    audio = (np.concatenate([c.audio for c in chunks]) if chunks
             else np.zeros((0,), np.float32))
    prosody = (np.concatenate([c.prosody for c in chunks])
               if chunks and chunks[0].prosody is not None else None)
    return {"audio": audio, "codes": codes, "prosody": prosody,
            "style": next((c.style for c in chunks if c.style is not None),
                          None),
            "eos": any(c.eos for c in chunks),
            "first_chunk_s": chunks[0].elapsed_s if chunks else 0.0,
            "compute_s": chunks[-1].elapsed_s if chunks else 0.0,
            "seconds": len(codes) * self.frame_seconds}
