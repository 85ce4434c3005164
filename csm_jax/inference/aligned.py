"""Generation on the aligned text stream: text consumed as the model speaks.

A model trained with ``model.text_stream="aligned"`` carries the token being
spoken on every frame's row (``data.examples.frames``). Generating, each
row's state samples two things: whether the next row moves on to the next
token (the advance head) and, once the text leads the audio by
``text_lead`` rows, the next audio frame. After the last token the rows
carry the end-of-text id; the end-of-speech frame is allowed only then,
and ``Sampling.tail_seconds`` after the point where training puts it the
utterance is ended anyway: generation stops when the text has been spoken.

Because a row only shows the current token and the ``text_lookahead``
after it, the text may arrive while audio streams out (``TextFeed``): a
chunk of k rows runs once k + 1 + lookahead tokens past the current one
are known (or the text is closed), and the tokens of
a word are final once whitespace follows it (``PhonemeTokenizer`` phonemizes
word by word), so streamed text gives the frames of the whole text.

With the prosody stream (``model.prosody``) a row's frame is two-stage, as
on the prefix stream (``decode.decode_frame``): its prosody tokens first
(sampled, or taken from a sketch), then its codes, and the row fed back
carries both, the prosody column on the frame's row as in training. The
turn's style is given or sampled once, from the state that predicts its
first frame (row ``text_lead`` - 1); context turns carry the prosody
tokens of their audio (``aligned_prosody``).

With the dual memory (``model.memory``) the request's memory is the
prompt's prefix, in the cache slots before it (``Generator``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from csm_jax.config import text_stream
from csm_jax.config.errors import UserError
from csm_jax.data.examples.frames import END_OF_TEXT, Turn, conversation_rows, \
    trim_context
from csm_jax.data.phoneme_tokenizer import PhonemizeError, split_words
from csm_jax.data.text_alignment import timed_index
from csm_jax.inference import aligned_prosody, decode
from csm_jax.inference.chunk import Chunk
from csm_jax.inference.sampling import derived_key, fold_rows, sample

_NOT_CLOSED = np.int32(2 ** 30)   # n_tokens of a text still arriving
_BUCKET = 64


class TextStreamError(UserError, ValueError):
  """Streaming text in asked of a model that cannot take it."""


class TextFeed:
  """A request's text, whole or arriving in pieces, as tokens."""

  def __init__(self, tokenizer, pieces: Iterable[str] | str):
    self.tokenizer = tokenizer
    self._pieces: Iterator[str] = iter([pieces] if isinstance(pieces, str)
                                       else pieces)
    self._buffer, self.text = "", ""
    self.tokens: list[int] = []
    self.closed = False

  def _take_words(self, final: bool) -> None:
    if final:
      ready, self._buffer = self._buffer, ""
    else:  # a word is complete once whitespace follows it
      cut = max(self._buffer.rfind(c) for c in " \t\n\r")
      if cut < 0:
        return
      ready, self._buffer = self._buffer[:cut + 1], self._buffer[cut + 1:]
    for word, pause in split_words(ready):
      self.tokens += self.tokenizer.word_tokens(word, pause)

  def pull(self, need: int) -> None:
    """Reads pieces until ``need`` tokens are known or the text ends."""
    while not self.closed and len(self.tokens) < need:
      piece = next(self._pieces, None)
      if piece is None:
        self._take_words(final=True)
        self.closed = True
        if not any(not self.tokenizer.is_pause(t) for t in self.tokens):
          raise PhonemizeError(f"cannot phonemize {self.text!r}: no word "
                               "eSpeak can speak in it")
        break
      self.text += piece
      self._buffer += piece
      self._take_words(final=False)


def check_streaming(config) -> None:
  if not text_stream.aligned(config.model):
    raise TextStreamError(
        "this model reads its text as a prefix (model.text_stream="
        f"{text_stream.stream(config.model)!r}): it needs the whole text "
        "before it speaks; streaming text in needs an aligned-stream model")


# -- compiled rows ------------------------------------------------------------
def generate_rows(model, state: dict, key, n_rows: int, temperature,
                  top_k: int, top_p: float, tokens, n_tokens, lead: int,
                  advance_temperature, ahead: int = 0, allow_eos=None,
                  n_levels: int | None = None, plan=None,
                  prosody_temperature=None):
  """``n_rows`` rows in one scan (module docstring).

  ``state`` is a decoding state (``decode``) plus ``ptr`` (B,), the token
  each request's last row shows, and ``row`` (), that row's index in the
  turn's stream. ``tokens`` (B, L) and ``n_tokens`` (B,) are the text.
  ``allow_eos`` (R,) or (R, B): rows that may end the speech at all
  (default all; ``Sampling.min_seconds``, a sketch's length); end of speech
  also waits for end-of-text. ``n_levels``: only the first k codebooks are
  sampled and fed back (adaptive quality, ``decode.decode_frame``).
  Returns (codes (R, B, N), end of speech (R, B), audio present (R,),
  token index (R, B), state).

  With the prosody stream, ``plan`` holds the sketch each row's frame
  follows ((R, B) arrays, ``decode.plan_frame``), and a sixth value is
  returned: the rows' (F0 ids, energy ids), each (R, B).
  """
  b, width = tokens.shape
  on = getattr(model, "prosody", None) is not None

  def text_at(ptr):
    """(B, 1 + ahead): the token at ``ptr`` and the ones after it."""
    at = ptr[:, None] + jnp.arange(1 + ahead)
    tok = jnp.take_along_axis(tokens, jnp.minimum(at, width - 1), axis=1)
    return jnp.where(at < n_tokens[:, None], tok, END_OF_TEXT)

  allow = (jnp.ones((n_rows,), bool) if allow_eos is None
           else jnp.asarray(allow_eos))

  def step(state, inp):
    k, ok, given = inp
    h, ptr = state["h"], state["ptr"]
    at_end = ptr >= n_tokens
    adv = sample(model.advance_head(h).astype(jnp.float32),
                 derived_key(k, 3), advance_temperature)
    ptr_next = jnp.where(at_end, ptr, ptr + adv)
    row = state["row"] + 1
    audio_on = row >= lead
    column = None
    if on:
      pt = (temperature[0] if prosody_temperature is None
            else prosody_temperature)
      state = aligned_prosody.with_first_style(
          model, state, derived_key(k, 4), row == lead, pt)
      codes, eos, tokens_out = decode.decode_frame(
          model, h, k, temperature, top_k, top_p, n_levels,
          allow_eos=at_end & ok, style=state["style"], plan=given,
          prosody_temperature=prosody_temperature)
      tokens_out, column = aligned_prosody.row_column(
          tokens_out, state["style"], audio_on)
    else:
      codes, eos = decode.decode_frame(model, h, k, temperature, top_k,
                                       top_p, n_levels, allow_eos=at_end & ok)
    codes = jnp.where(audio_on, codes, 0)
    n = codes.shape[1]
    present = audio_on & (jnp.arange(n) < (n_levels or n))
    mask = jnp.concatenate([jnp.broadcast_to(present, (b, 1, n)),
                            jnp.ones((b, 1, 1), bool)], axis=-1)
    new = decode.append_rows(model, state, codes[:, None],
                             text_at(ptr_next)[:, None], mask,
                             state["pos"][:, None], jnp.ones((b, 1),
                                                             jnp.int32),
                             prosody=column)
    new.update(ptr=ptr_next, row=row)
    out = (codes, eos & audio_on, audio_on, ptr_next)
    return new, out + ((tokens_out,) if on else ())

  state, out = jax.lax.scan(step, state,
                            (decode.split_keys(key, n_rows), allow, plan))
  return (*out[:4], state) + ((out[4],) if on else ())


# -- prompts ------------------------------------------------------------------
def context_stream(tokenizer, turn, n_frames: int, frame_seconds: float):
  """(token ids, token index per frame) of a context turn: from its
  phoneme timings when given, else spread evenly."""
  # More tokens than frames: keep what fits.
  ids = np.asarray(tokenizer.encode(turn.text), np.int32)[:n_frames]
  return ids, timed_index(tokenizer, ids, getattr(turn, "alignment", None),
                          n_frames, frame_seconds)


def tag_rows(gen, speaker: int, emotion: str | None = None) -> np.ndarray:
  """A turn's tag rows: ``[bos] [speaker]`` and, with ``model.emotion_tag``,
  its emotion's tag (None: unknown)."""
  return np.asarray(gen.tokenizer.tag_rows(
      speaker, emotion, text_stream.emotion_tag(gen.config.model)))


def prompt_rows(gen, first_tokens, speaker: int, context,
                reserve: int, emotion: str | None = None) -> dict:
  """Context turns on the aligned stream, the turn's tag rows, and its
  first stream row (its first token and the lookahead after it, no audio
  yet): ``first_tokens`` (1 + lookahead,)."""
  m = gen.config.model
  tok, lead, ahead = gen.tokenizer, text_stream.lead(m), text_stream.lookahead(m)
  turns = []
  for t in context:
    codes = gen._encode(t)  # pylint: disable=protected-access
    # With the prosody stream, the tokens of its audio (style unknown).
    prosody = (None if gen.bins is None
               else gen._context_prosody(t, codes))  # pylint: disable=protected-access
    turns.append(Turn(
        tag_rows(gen, t.speaker, getattr(t, "emotion", None)), codes,
        prosody=prosody,
        stream=context_stream(tok, t, len(codes), gen.frame_seconds)))
  current = Turn(tag_rows(gen, speaker, emotion), None)
  kept = trim_context(turns, current, gen.max_len, reserve=reserve + 1,
                      lead=lead)
  rows = conversation_rows(kept + [current], gen.n, prosody=gen.layout,
                           lead=lead, ahead=ahead)
  first = {"audio_tokens": np.zeros((1, gen.n), np.int32),
           "text_tokens": np.asarray([first_tokens], np.int32),
           "mask": np.eye(1, gen.n + 1, gen.n, dtype=bool),
           "positions": rows["positions"][-1:] + 1,
           "segment_ids": np.ones((1,), np.int32)}
  if gen.layout is not None:
    first.update(aligned_prosody.no_column(gen.layout, 1))
  return {k: np.concatenate([rows[k], v]) for k, v in first.items()}


# -- the loop -----------------------------------------------------------------
@dataclasses.dataclass
class _Request:
  feed: TextFeed
  end_row: int | None = None   # first row showing end-of-text
  done: bool = False


def first_row(feed: TextFeed, ahead: int) -> np.ndarray:
  """The first stream row's tokens: the first and the ``ahead`` after it."""
  t = feed.tokens[:1 + ahead]
  return np.asarray(t + [END_OF_TEXT] * (1 + ahead - len(t)), np.int32)


def _token_array(reqs, width: int):
  out = np.zeros((len(reqs), width), np.int32)
  n = np.empty((len(reqs),), np.int32)
  for j, r in enumerate(reqs):
    t = r.feed.tokens[:width]
    out[j, :len(t)] = t
    n[j] = len(r.feed.tokens) if r.feed.closed else _NOT_CLOSED
  return out, n


def stream(gen, requests, s, styles=None, sketches=None, audio: bool = True,
           stop_at=None, feeds=None, emotions=None):
  """Chunks for ``requests`` ((text, speaker, context), ...), as
  ``Generator.stream_batch`` yields them; ``feeds`` (one ``TextFeed`` per
  request) replaces the texts when text streams in; ``emotions``: each
  request's emotion (None: unknown) for a model with the emotion tag. With the prosody
  stream: each request's given style id (-1: the model's) and sketch,
  ``stop_at`` (end where the sketch ends), and ``audio`` False plans
  without decoding (``aligned_prosody``)."""
  t0 = time.perf_counter()
  if s.speculative:
    raise TextStreamError("--speculative is not available on the aligned "
                          "text stream yet; leave it unset")
  if feeds is None:
    feeds = [TextFeed(gen.tokenizer, text) for text, *_ in requests]
  reqs = [_Request(f) for f in feeds]
  m = gen.config.model
  fpc, lead = s.frames_per_call, text_stream.lead(m)
  ahead = text_stream.lookahead(m)
  for r in reqs:
    r.feed.pull(1 + ahead)
  reserve = gen.reserve_frames(s) + lead
  emotions = emotions or [None] * len(reqs)
  prompts = [prompt_rows(gen, first_row(r.feed, ahead), spk, ctx, reserve,
                         emo)
             for r, (_, spk, ctx, *_), emo in zip(reqs, requests, emotions)]
  # With the dual memory, each request's memory (given, or written from
  # its context turns) is the prompt's prefix, as on the prefix stream.
  batch = gen._batch(prompts, reserve)  # pylint: disable=protected-access
  state = gen._prefill(  # pylint: disable=protected-access
      gen.params, batch, gen._memory_prefix(requests),  # pylint: disable=protected-access
      cache_rows=gen.cache_rows(batch["positions"].shape[1], s, lead))
  b = len(reqs)
  # Committed like the rest of the state, or the step compiles twice.
  device = state["h"].sharding
  state.update(ptr=jax.device_put(jnp.zeros((b,), jnp.int32), device),
               row=jax.device_put(jnp.zeros((), jnp.int32), device))
  rows_left = min(gen.max_frames(s) + lead,
                  decode.cache_size(state) - int(state["length"]))
  plan = None
  if gen.bins is not None:
    state, plan = aligned_prosody.start(gen, state, styles, sketches,
                                        stop_at, s, lead, rows_left + fpc)
  no_end = np.zeros((b,), np.int64) if plan is None else plan.no_end
  temps = np.full((gen.n,), s.temperature, np.float32)
  if s.codebook_temperatures is not None:
    temps[:len(s.codebook_temperatures)] = s.codebook_temperatures
  step = gen.aligned_step(fpc, s.top_k, s.top_p, s.n_levels)
  levels = s.n_levels or gen.n
  decoders = [gen.codec.streaming_decoder() if gen.codec and audio else None
              for _ in reqs]
  if decoders and decoders[0] is not None and hasattr(decoders[0], "warm") \
      and (fpc, s.n_levels) not in gen._warm:  # pylint: disable=protected-access
    decoders[0].warm(fpc, levels)
    gen._warm.add((fpc, s.n_levels))  # pylint: disable=protected-access
  keys = jax.vmap(jax.random.key)(jnp.full((b,), s.seed, jnp.uint32))
  tail = int(round(s.tail_seconds / gen.frame_seconds))
  # No end of speech before ``min_seconds`` of frames (rows past the lead),
  # nor before a request's sketch ends.
  min_row = lead - 1 + int(round(s.min_seconds / gen.frame_seconds))
  first_end = np.maximum(min_row + 1, lead + no_end)   # (B,)
  silent = [0] * b
  silence_frames = int(s.silence_seconds / gen.frame_seconds)
  ptr = np.zeros((b,), np.int64)
  made = 0
  while made < rows_left and not all(r.done for r in reqs):
    for j, r in enumerate(reqs):
      if not r.done:
        r.feed.pull(int(ptr[j]) + fpc + 1 + ahead)
    width = -(-max(len(r.feed.tokens) for r in reqs) // _BUCKET) * _BUCKET
    tokens, n_tokens = _token_array(reqs, width)
    rows = made + 1 + np.arange(fpc)   # stream row index of each output
    extra = () if plan is None else (plan.chunk(made, fpc), plan.temperature)
    # Host arrays go to the compiled step as they are: jit moves them in
    # one call, where a jnp.asarray each costs a dispatch per chunk.
    out = step(gen.params, state, fold_rows(keys, made), temps, tokens,
               n_tokens, np.float32(s.advance_temperature),
               rows[:, None] >= first_end[None], *extra)
    codes, ends, audio_on, ptrs, state = out[:5]
    codes = np.asarray(codes).transpose(1, 0, 2)  # (B, R, N)
    ends, audio_on = np.asarray(ends).T, np.asarray(audio_on)
    ptrs = np.asarray(ptrs).T
    planned = (None if plan is None else
               np.stack([np.asarray(t).T for t in out[5]], -1))  # (B, R, 2)
    made += fpc
    last = made >= rows_left
    chunk_out = []
    for j, r in enumerate(reqs):
      if r.done:
        chunk_out.append(None)
        continue
      ptr[j] = ptrs[j, -1]
      if r.end_row is None and r.feed.closed:
        past = np.flatnonzero(ptrs[j] >= len(r.feed.tokens))
        if len(past):
          r.end_row = int(rows[past[0]])
      keep = audio_on
      eos = np.flatnonzero(ends[j][keep])
      if r.end_row is not None and not len(eos):
        # The text has been spoken: training puts the end of speech
        # ``lead`` rows after end-of-text; allow ``tail`` more.
        over = np.flatnonzero(rows[keep] >= max(r.end_row + lead + tail,
                                                first_end[j]))
        eos = over[:1]
      if plan is not None and plan.stop[j] is not None:
        # The paced plan's end is this utterance's end of speech.
        cut = np.flatnonzero(rows[keep] >= lead + plan.stop[j])[:1]
        if len(cut):
          eos = np.minimum(eos, cut) if len(eos) else cut
      tok = None if planned is None else planned[j][keep]
      if tok is not None and len(eos):
        tok = tok[:eos[0]]
      c, pcm, silent[j], ended = gen.push_frames(
          codes[j][keep][:, :levels], eos, decoders[j], silent[j], s,
          silence_frames, last=last)
      r.done = ended
      chunk_out.append(Chunk(c, pcm, time.perf_counter() - t0,
                             eos=bool(len(eos)), prosody=tok,
                             style=None if plan is None
                             else aligned_prosody.style_of(gen, state, j)))
    yield chunk_out
