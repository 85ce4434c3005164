"""Prefix caching between the turns of a conversation.

A conversation's next prompt is mostly its previous one: the same context
turns, then the previous reply (already in the KV cache, frame by frame, as
it was generated), then the new turn's text. ``Conversation`` keeps the
generation state (``decode``'s dict) between replies and edits it with the
pure functions here instead of prefilling the whole prompt again:

- ``drop_slots``: the oldest turns that no longer fit the model's window
  leave the cache; later slots move down, so slot distances (which the
  text and audio attention windows measure) stay the distances of the rows;
- ``write_prefix``: the memory's prefix vectors are rewritten in the first
  P slots (prefix slots attend only to each other, so this is exact);
- ``truncate``: a reply's slots end where its frames end (a chunk computes
  a few frames past the end of speech), then its end-of-speech row is fed
  as training lays out a context turn;
- ``append_rows``: only the rows that are new (turns added since, and the
  new turn's text) run through the backbone, padded to a bucket.

What is exact and what is not: for a model without the memory, while no
turn has left the window, the cache holds the rows, positions and slot
distances of a fresh prefill of the same prompt (positions may start above
0 once turns have left; RoPE scores depend only on position differences),
and greedy replies are the same (``tests/memory/test_prefix_cache.py``).
Two approximations otherwise: rows kept after an older turn left were
computed while it was still visible (as in any streaming model), and with
the memory, rows computed at an earlier turn attended to the memory as it
was then. ``Conversation(prefix_cache=False)`` prefills every reply from
scratch instead.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.data.examples.frames import Turn, conversation_rows, trim_context
from csm_jax.inference import decode
from csm_jax.model.attention import PREFIX_SEGMENT

BUCKET = 64   # rows appended per reply are padded to a multiple (compiles)


def _slot_axis(x: jax.Array) -> int:
  # (B, S, kv, d) per layer (unrolled) or (layers, B, S, kv, d) stacked.
  return 1 if x.ndim == 4 else 2


def drop_slots(state: dict, lo, count) -> dict:
  """``state`` without cache slots [lo, lo + count); later slots move down
  by ``count`` and the freed tail is empty."""
  seg = state["seg"]
  s = seg.shape[1]
  idx = jnp.arange(s)
  src = jnp.where(idx < lo, idx, idx + count)
  live = src < state["length"]
  src = jnp.minimum(src, s - 1)

  def move(x):
    return jnp.take(x, src, axis=_slot_axis(x))

  return {**state, "k": jax.tree.map(move, state["k"]),
          "v": jax.tree.map(move, state["v"]),
          "seg": jnp.where(live[None], jnp.take(seg, src, axis=1), 0),
          "length": state["length"] - count}


def truncate(state: dict, length, next_position) -> dict:
  """Slots from ``length`` on are emptied; the next row goes at ``length``
  with RoPE position ``next_position`` (B,)."""
  keep = jnp.arange(state["seg"].shape[1]) < length
  return {**state, "seg": jnp.where(keep[None], state["seg"], 0),
          "length": jnp.asarray(length, jnp.int32),
          "pos": jnp.asarray(next_position, jnp.int32)}


def write_prefix(model, state: dict, prefix: jax.Array) -> dict:
  """The first P slots recomputed from new prefix vectors (B, P, W)."""
  b, p = prefix.shape[:2]
  positions = jnp.broadcast_to(jnp.arange(-p, 0, dtype=jnp.int32), (b, p))
  seg = jnp.full((b, p), PREFIX_SEGMENT, jnp.int32)
  windows = jnp.full((b, p), model.audio_window, jnp.int32)
  cached = jax.lax.dynamic_update_slice_in_dim(state["seg"], seg, 0, axis=1)
  _, (k, v) = model.run_backbone(
      (prefix.astype(model.dtype), positions, seg, windows),
      cache=(state["k"], state["v"]), start=0, cached_segments=cached)
  return {**state, "k": k, "v": v, "seg": cached}


def append_rows(model, state: dict, audio_tokens, text_tokens, mask,
                positions, segment_ids, n_real) -> dict:
  """Rows (B, T, ...) of which the first ``n_real`` are real, written at
  ``length``; the padding rows' slots are emptied for the next write, and
  the state's last row (``h``) is the last real one."""
  rows = model.backbone_rows(audio_tokens, text_tokens, mask, positions,
                             segment_ids)
  start = state["length"]
  seg = jax.lax.dynamic_update_slice_in_dim(state["seg"], rows[2], start,
                                            axis=1)
  h, (k, v) = model.run_backbone(rows, cache=(state["k"], state["v"]),
                                 start=start, cached_segments=seg)
  end = start + n_real
  seg = jnp.where((jnp.arange(seg.shape[1]) < end)[None], seg, 0)
  last = n_real - 1
  return {**state, "k": k, "v": v, "seg": seg, "length": end,
          "pos": jax.lax.dynamic_index_in_dim(positions, last, axis=1,
                                              keepdims=False) + 1,
          "h": jax.lax.dynamic_index_in_dim(h, last, axis=1,
                                            keepdims=False)}


class PromptCache:
  """One conversation's generation state kept between replies.

  ``prepare(context, text, speaker, memory, sampling)`` returns the state
  the reply decodes from (the cache edited as the module docstring says);
  ``finish(state, turn, frames)`` records the reply once it is spoken.
  ``stats`` counts the rows prefilled and the rows reused.
  """

  def __init__(self, gen):
    self.gen = gen
    self.state = None
    self.turns: list = []          # (context turn, rows) in slot order
    self.stats = {"rows_prefilled": 0, "rows_reused": 0, "rebuilds": 0}
    graphdef = gen.graphdef
    self._drop = jax.jit(drop_slots)
    self._truncate = jax.jit(truncate)
    self._prefix = jax.jit(lambda p, st, pre: write_prefix(
        nnx.merge(graphdef, p), st, pre))
    self._append = jax.jit(lambda p, st, rows, n: append_rows(
        nnx.merge(graphdef, p), st, rows["audio_tokens"],
        rows["text_tokens"], rows["mask"], rows["positions"],
        rows["segment_ids"], n))
    self._eos = jax.jit(lambda p, st: decode.append_frame(
        nnx.merge(graphdef, p), st,
        jnp.zeros((st["pos"].shape[0], gen.n), jnp.int32)))

  def _fresh(self) -> dict:
    g = self.gen
    model = nnx.merge(g.graphdef, g.params)
    state = decode.init_state(model, 1, g.max_len + g.prefix_slots)
    return {**state, "length": jnp.asarray(g.prefix_slots, jnp.int32)}

  def _turn(self, t) -> Turn:
    g = self.gen
    return Turn(np.asarray(g.tokenizer.encode_turn(t.speaker, t.text)),
                None if t.codes is None else np.asarray(t.codes)[:, :g.n])

  def prepare(self, context, text: str, speaker: int, memory, sampling):
    g = self.gen
    current = Turn(np.asarray(g.tokenizer.encode_turn(speaker, text)), None)
    kept = trim_context([self._turn(t) for t in context], current,
                        g.max_len, reserve=g.reserve_frames(sampling))
    want = list(context)[len(context) - len(kept):]
    have = [t for t, _ in self.turns]
    d = len(have)
    for i in range(len(have)):
      tail = have[i:]
      if len(want) >= len(tail) and all(a is b for a, b in
                                        zip(want, tail)):
        d = i
        break
    if self.state is None or (d == len(have) and have):
      if self.state is not None:
        self.stats["rebuilds"] += 1
      self.state, self.turns, d = self._fresh(), [], 0
    state = self.state
    gone = sum(n for _, n in self.turns[:d])
    if gone:
      state = self._drop(state, g.prefix_slots, gone)
    self.turns = self.turns[d:]
    self.stats["rows_reused"] += sum(n for _, n in self.turns)
    if memory is not None:
      state = self._prefix(g.params, state, g.memory.prefix(memory))
    new = want[len(self.turns):]
    rows = conversation_rows([self._turn(t) for t in new] + [current], g.n)
    for t in new:
      self.turns.append((t, self._turn(t).n_rows(True)))
    n = len(rows["positions"])
    start = int(state["length"])
    room = g.max_len + g.prefix_slots - start
    width = max(n, min(room, -(-n // BUCKET) * BUCKET))
    pos0 = int(np.asarray(state["pos"])[0])
    batch = {}
    for k, v in rows.items():
      pad = np.zeros((width - n,) + v.shape[1:], v.dtype)
      batch[k] = np.concatenate([v, pad])[None]
    # Padding rows continue the positions in segment 1: finite values,
    # emptied after the write.
    batch["positions"] = (pos0 + np.arange(width, dtype=np.int32))[None]
    batch["segment_ids"] = np.ones((1, width), np.int32)
    state = self._append(g.params, state,
                         {k: jnp.asarray(v) for k, v in batch.items()},
                         jnp.int32(n))
    self.stats["rows_prefilled"] += n
    self._text_rows = len(current.text_ids)
    self._turn_end = start + n
    self._turn_pos = pos0 + n
    self.state = None   # owned by the reply until ``finish``
    return state

  def finish(self, state, turn, frames: int) -> None:
    """``turn`` (a ContextTurn, or None for a reply of no frame) spoke
    ``frames`` frames from ``state`` (the state after its last chunk)."""
    g = self.gen
    if turn is None or not frames:
      start = self._turn_end - self._text_rows
      self.state = self._truncate(state, start,
                                  jnp.asarray([self._turn_pos
                                               - self._text_rows]))
      return
    end = self._turn_end + frames
    if end + 1 > g.max_len + g.prefix_slots:
      self.state, self.turns = None, []    # no room for its end row
      return
    state = self._truncate(state, end,
                           jnp.asarray([self._turn_pos + frames]))
    self.state = self._eos(g.params, state)
    self.turns.append((turn, self._text_rows + frames + 1))
