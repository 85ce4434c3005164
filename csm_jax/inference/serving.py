"""Continuous batching: requests join and leave a running batch.

``Server(generator, slots=B)`` holds B decoding slots. Each slot has its
own generation state (a batch-1 cache of the model's trained length, so
its own cache length and positions) and its own frame counter: a request
starts in a free slot while the others are mid-utterance and frees it when
it ends. One compiled call advances every slot by a chunk
(``decode.generate_frames`` vmapped over the slots); a free slot's lane
computes and is ignored. A request's frames depend only on itself: with
the same seed it says what ``Generator.generate`` says alone (its key is
folded with its own frame count, as there).

  server = Server(gen, slots=4)
  a = server.submit("Are you coming?", speaker=0)
  b = server.submit("Yes.", speaker=1, context=turns, seed=3)
  for request_id, chunk in server.run():     # chunks as they are made
    ...

Static choices (temperature, top-k/p, chunk size, levels) are the
server's ``Sampling``; seed, ``max_seconds`` and ``min_seconds`` are per
request. Models with the prosody stream are served by ``stream_batch``.
"""

from __future__ import annotations

import collections
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.config import text_stream
from csm_jax.data.prosody_tokens import ProsodyError
from csm_jax.inference import decode
from csm_jax.inference.aligned import TextStreamError
from csm_jax.inference.generator import Chunk, Generator, Sampling


@dataclasses.dataclass
class _Request:
  id: int
  request: tuple              # (text, speaker, context[, memory state])
  sampling: Sampling
  submitted: float
  made: int = 0
  budget: int = 0
  silent: int = 0
  decoder: object = None
  started_step: int = -1      # the server step it entered a slot at


class Server:
  """B slots of continuous batching; see the module docstring."""

  def __init__(self, gen: Generator, slots: int = 4,
               sampling: Sampling = Sampling()):
    if gen.bins is not None:
      raise ProsodyError("the server does not carry the prosody stream's "
                         "plans; use Generator.stream_batch for this model")
    if text_stream.aligned(gen.config.model):
      raise TextStreamError("the server's slots decode prefix-stream rows; "
                            "an aligned-stream model speaks through "
                            "Generator.stream_batch or stream_text")
    if slots < 1:
      raise ValueError(f"slots must be at least 1, got {slots}")
    self.gen, self.n_slots, self.sampling = gen, int(slots), sampling
    model = nnx.merge(gen.graphdef, gen.params)
    one = decode.init_state(model, 1, gen.max_len + gen.prefix_slots)
    self.state = jax.tree.map(lambda x: jnp.stack([x] * self.n_slots), one)
    self.slots: list[_Request | None] = [None] * self.n_slots
    self.queue: collections.deque[_Request] = collections.deque()
    self.steps = 0
    self.finished: dict[int, int] = {}   # request id -> step it ended at
    self._ids = 0
    s = sampling
    graphdef = gen.graphdef

    def advance(params, state, keys, temps, allow):
      m = nnx.merge(graphdef, params)
      lane = lambda st, k, a: decode.generate_frames(
          m, st, k, s.frames_per_call, temps, s.top_k, s.top_p, s.n_levels,
          a)
      return jax.vmap(lane)(state, keys, allow)

    self._advance = jax.jit(advance, donate_argnums=1)
    self._insert = jax.jit(
        lambda all_, one, j: jax.tree.map(lambda a, o: a.at[j].set(o),
                                          all_, one), donate_argnums=0)
    temps = np.full((gen.n,), s.temperature, np.float32)
    if s.codebook_temperatures is not None:
      temps[:len(s.codebook_temperatures)] = s.codebook_temperatures
    self._temps = jnp.asarray(temps)

  # -- requests ---------------------------------------------------------------
  def submit(self, text: str, speaker: int, context=(), seed: int | None = None,
             max_seconds: float | None = None,
             min_seconds: float | None = None, memory=None) -> int:
    """Queues a request; returns its id. It joins at the next ``step``
    with a free slot."""
    s = self.sampling
    per = dataclasses.replace(
        s, seed=s.seed if seed is None else int(seed),
        max_seconds=s.max_seconds if max_seconds is None else max_seconds,
        min_seconds=s.min_seconds if min_seconds is None else min_seconds)
    request = (text, int(speaker), list(context))
    if memory is not None:
      request = request + (memory,)
    self._ids += 1
    self.queue.append(_Request(self._ids, request, per, time.perf_counter()))
    return self._ids

  def _start(self, j: int, r: _Request) -> None:
    g, s = self.gen, r.sampling
    reserve = g.reserve_frames(s)
    rows = g.prompt_rows(*r.request[:3], reserve=reserve)
    state = g._prefill(g.params, g._batch([rows], reserve),
                       g._memory_prefix([r.request]))
    r.budget = min(g.max_frames(s),
                   g.max_len + g.prefix_slots - int(state["length"]))
    if g.codec is not None:
      r.decoder = g.codec.streaming_decoder()
      key = (s.frames_per_call, s.n_levels)
      if hasattr(r.decoder, "warm") and key not in g._warm:
        r.decoder.warm(s.frames_per_call, s.n_levels or g.n)
        g._warm.add(key)
    r.started_step = self.steps
    self.state = self._insert(self.state, state, jnp.int32(j))
    self.slots[j] = r

  @property
  def busy(self) -> bool:
    return bool(self.queue) or any(r is not None for r in self.slots)

  # -- decoding ---------------------------------------------------------------
  def step(self) -> list[tuple[int, Chunk]]:
    """Fills free slots from the queue, then advances every busy slot by
    one chunk; returns (request id, chunk) for each of them."""
    for j in range(self.n_slots):
      if self.slots[j] is None and self.queue:
        self._start(j, self.queue.popleft())
    active = [(j, r) for j, r in enumerate(self.slots) if r is not None]
    if not active:
      return []
    s, g = self.sampling, self.gen
    fpc = s.frames_per_call
    keys, allow = [], np.ones((self.n_slots, fpc, 1), bool)
    for j, r in enumerate(self.slots):
      made = 0 if r is None else r.made
      seed = 0 if r is None else r.sampling.seed
      keys.append(jax.random.fold_in(jax.random.key(np.uint32(seed)), made))
      if r is not None:
        first = int(round(r.sampling.min_seconds / g.frame_seconds))
        allow[j, :, 0] = made + np.arange(fpc) >= first
    codes, ends, self.state = self._advance(
        g.params, self.state, jnp.stack(keys)[:, None], self._temps,
        jnp.asarray(allow))
    codes, ends = np.asarray(codes), np.asarray(ends)
    silence = int(s.silence_seconds / g.frame_seconds)
    levels = s.n_levels or g.n
    out = []
    for j, r in active:
      frames = min(fpc, r.budget - r.made)
      c = codes[j, :frames, 0, :levels]
      eos = np.flatnonzero(ends[j, :frames, 0])
      c, pcm, r.silent, ended = g.push_frames(
          c, eos, r.decoder, r.silent, s, silence,
          last=r.made + frames >= r.budget)
      r.made += frames
      out.append((r.id, Chunk(c, pcm, time.perf_counter() - r.submitted,
                              eos=bool(len(eos)))))
      if ended or r.made >= r.budget:
        self.slots[j] = None
        self.finished[r.id] = self.steps
    self.steps += 1
    return out

  def run(self):
    """Steps until every queued and running request has ended."""
    while self.busy:
      yield from self.step()


def serve_all(gen: Generator, requests, slots: int,
              sampling: Sampling = Sampling()) -> dict[int, dict]:
  """Serves ``requests`` (dicts of ``Server.submit``'s arguments) through
  ``slots`` slots; returns each one's codes, audio and first-chunk time."""
  server = Server(gen, slots, sampling)
  ids = [server.submit(**r) for r in requests]
  got = {i: [] for i in ids}
  for rid, chunk in server.run():
    got[rid].append(chunk)
  out = {}
  for i in ids:
    chunks = got[i]
    out[i] = {"codes": (np.concatenate([c.codes for c in chunks]) if chunks
                        else np.zeros((0, sampling.n_levels or gen.n))),
              "audio": (np.concatenate([c.audio for c in chunks]) if chunks
                        else np.zeros((0,), np.float32)),
              "first_chunk_s": chunks[0].elapsed_s if chunks else 0.0}
  return out
