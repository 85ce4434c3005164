"""KV-cached CSM decoding: prefill, one backbone row, one whole frame.

Everything here is a pure function of ``(model, state, ...)`` meant to be
called inside ``jax.jit`` after ``nnx.merge``. The generation state is a dict
pytree with static shapes:

  k, v     backbone KV cache (layers, B, S, kv_heads, head_dim), or one
           (B, S, kv_heads, head_dim) array per layer for an unrolled model
  seg      (B, S) segment id of each cache slot (0 = empty / padding)
  length   () next cache slot (shared by the batch: prompts are left-padded)
  pos      (B,) next RoPE position of each example
  h        (B, W) backbone output of the last row, which predicts the next frame

A frame is: sample codebook 0 from ``codebook0_head(h)``, then the depth
decoder's N-1 steps (its cache is rebuilt each frame, as in CSM), all inside
one ``lax.fori_loop``; then one backbone row with the new frame.

The functions accept the training model (stacked layers, one stacked cache)
or its ``unrolled`` copy (per-layer weights and caches), which is what
generation uses: it decodes several times faster on CPU.

With the prosody stream (``model.prosody``) the state also holds ``style``
(B,), the style id of the turn being spoken (``choose_style`` sets it after
the prefill), and a frame is two-stage: its prosody tokens first (sampled,
or taken from a ``plan`` the caller gives: a sketch to follow), then its
codes from the plan state, and the row fed back carries both.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flax import nnx

from csm_jax.inference.sampling import (NEG_INF, derived_key, draw_width,
                                       gumbel_noise, sample)
from csm_jax.model.transformer import UnrolledTransformer


def compute_dtype_for_platform(dtype, platform: str | None = None):
  """The compute dtype decoding should use on ``platform`` (default backend).

  XLA:CPU has no fast bf16/f16 matrix-vector path: it widens the weights to
  f32 on every call, which measured 8x slower than an f32 product here. On
  CPU decoding therefore computes in f32; accelerators keep ``dtype``.
  """
  platform = platform or jax.default_backend()
  return jnp.float32 if platform == "cpu" else jnp.dtype(dtype)


def cast_floating(tree, dtype):
  """``tree`` with its floating leaves cast to ``dtype`` (ints untouched)."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
      else x, tree)


def params_for_platform(params, platform: str | None = None):
  """Floating parameters widened to f32 on CPU (see above); else unchanged.

  An export stores bf16 weights; decoding them on XLA:CPU would widen every
  matrix on every call (measured 1.5x slower at debug size than f32
  weights), so they are widened once at load.
  """
  if (platform or jax.default_backend()) != "cpu":
    return params
  return cast_floating(params, jnp.float32)


def with_compute_dtype(model, dtype):
  """A copy of ``model`` whose layers compute (and cache K/V) in ``dtype``.

  Parameters keep their stored dtype; call outside ``jit``.
  """
  return _set_compute_dtype(nnx.merge(*nnx.split(model)), dtype)


def _set_compute_dtype(model, dtype):
  for _, module in nnx.iter_modules(model):
    for attr in ("dtype", "cache_dtype"):
      if hasattr(module, attr):
        setattr(module, attr, jnp.dtype(dtype))
  return model


def unrolled(model, compute_dtype=None):
  """A copy of ``model`` with per-layer transformer weights, for decoding.

  Call it outside ``jit``, once: the per-layer arrays are materialized here.
  The copy shares the embeddings and heads with ``model``. With
  ``compute_dtype`` (e.g. from ``compute_dtype_for_platform``) it also
  computes in that dtype (``with_compute_dtype``).
  """
  m = nnx.merge(*nnx.split(model))
  if not isinstance(m.backbone, UnrolledTransformer):
    m.backbone = UnrolledTransformer(m.backbone)
    m.decoder = UnrolledTransformer(m.decoder)
  return m if compute_dtype is None else _set_compute_dtype(m, compute_dtype)


def init_state(model, batch: int, max_len: int, dtype=None) -> dict:
  k, v = model.backbone.init_cache(batch, max_len, dtype)
  width = model.backbone.spec.width
  state = {"k": k, "v": v, "seg": jnp.zeros((batch, max_len), jnp.int32),
           "length": jnp.zeros((), jnp.int32),
           "pos": jnp.zeros((batch,), jnp.int32),
           "h": jnp.zeros((batch, width), model.dtype)}
  if getattr(model, "prosody", None) is not None:
    state["style"] = jnp.full((batch,), model.prosody.unknown_style,
                              jnp.int32)
  return state


def cache_size(state: dict) -> int:
  """Rows the state's cache holds (filled or not)."""
  return int(state["seg"].shape[1])


def _keep_style(state: dict, new: dict) -> dict:
  if "style" in state:
    new["style"] = state["style"]
  return new


def append_rows(model, state: dict, audio_tokens, text_tokens, mask,
                positions, segment_ids, cond=None, prefix=None,
                prosody=None) -> dict:
  """Runs rows (B, T, ...) through the backbone, writing slots [length, +T).

  Prefill (T = prompt length, optionally after ``prefix`` vectors, which
  take the first P slots) and single-row steps (T = 1) share this code; the
  mask comes from the model (``CSM.run_backbone``), as in training. The
  caller keeps ``length + P + T <= S``.
  """
  rows = model.backbone_rows(audio_tokens, text_tokens, mask, positions,
                             segment_ids, cond, prefix, prosody)
  start = state["length"]
  seg_cache = jax.lax.dynamic_update_slice_in_dim(state["seg"], rows[2],
                                                  start, axis=1)
  h, (k, v) = model.run_backbone(rows, cache=(state["k"], state["v"]),
                                 start=start, cached_segments=seg_cache)
  return _keep_style(state, {"k": k, "v": v, "seg": seg_cache,
                             "length": start + rows[2].shape[1],
                             "pos": positions[:, -1] + 1, "h": h[:, -1]})


def frame_row(codes: jax.Array, n_levels: int | None = None):
  """An audio-only row (B, 1, ...) for the frame ``codes`` (B, N).

  With ``n_levels`` k < N only the first k columns are present in the mask:
  a frame generated at reduced quality is fed back as the partial frame it
  is, not as k codes followed by N - k codes 0.
  """
  b, n = codes.shape
  present = jnp.arange(n) < (n if n_levels is None else n_levels)
  mask = jnp.concatenate([jnp.broadcast_to(present, (b, 1, n)),
                          jnp.zeros((b, 1, 1), bool)], axis=-1)
  return codes[:, None, :], jnp.zeros((b, 1), jnp.int32), mask


def append_frame(model, state: dict, codes: jax.Array,
                 n_levels: int | None = None, prosody=None) -> dict:
  """Feeds a frame back; ``prosody`` (F0 ids (B,), energy ids (B,)) is its
  prosody column, with the turn's style from the state."""
  audio, text, mask = frame_row(codes, n_levels)
  b = codes.shape[0]
  column = None
  if prosody is not None:
    f0, energy = prosody
    column = (f0[:, None], energy[:, None], state["style"][:, None],
              jnp.ones((b, 1), bool))
  return append_rows(model, state, audio, text, mask, state["pos"][:, None],
                     jnp.ones((b, 1), jnp.int32), prosody=column)


def split_keys(key: jax.Array, n: int) -> jax.Array:
  """``n`` keys from one key (n,) or from per-example keys (B,) -> (n, B)."""
  if key.ndim == 0:
    return jax.random.split(key, n)
  return jnp.swapaxes(jax.vmap(lambda k: jax.random.split(k, n))(key), 0, 1)


def plan_frame(model, h, keys, temperature, top_k: int, style=None,
               plan=None):
  """Stage 1 of a frame: (plan state (B, W), (F0 ids (B,), energy ids (B,))).

  The style (B,) conditions the frame's prosody heads; a ``plan`` dict
  ({"f0", "energy", "given_f0", "given_energy"}, each (B,)) replaces the
  sampled tokens where given: the sketch stage 1 follows.
  """
  stream = model.prosody
  if style is None:
    style = jnp.full(h.shape[:1], stream.unknown_style, jnp.int32)
  s = stream.styled(h, style)
  f0_l, v_l, e_l = stream.frame_logits(s)
  voiced = sample(v_l, keys[0], temperature) == 1
  f0 = jnp.where(voiced, sample(f0_l, keys[1], temperature, top_k),
                 stream.unvoiced)
  energy = sample(e_l, keys[2], temperature, top_k)
  if plan is not None:
    f0 = jnp.where(plan["given_f0"], plan["f0"], f0)
    energy = jnp.where(plan["given_energy"], plan["energy"], energy)
  return stream.planned(s, f0, energy), (f0, energy)


def choose_style(model, state: dict, key: jax.Array, given: jax.Array,
                 temperature) -> dict:
  """Sets the state's turn style: ``given`` (B,) where >= 0, else sampled
  from the style head on the state that predicts the turn's first frame."""
  stream = model.prosody
  drawn = sample(stream.style_head(state["h"]), key, temperature)
  return {**state, "style": jnp.where(given >= 0, given, drawn)}


def frame_noise(model, key: jax.Array, b: int, top_k: int,
                top_p: float) -> jax.Array:
  """The Gumbel noise (N, B, width) of one frame's N codebook draws, in one
  call of the generator (``sampling.gumbel_noise``); codebook i's draw is
  ``sample(..., noise=noise[i])``."""
  return gumbel_noise(key, model.n_codebooks, b,
                      draw_width(model.audio_vocab, top_k, top_p))


def decode_frame(model, h: jax.Array, key: jax.Array, temperature: jax.Array,
                 top_k: int = 0, top_p: float = 1.0, n_levels: int | None = None,
                 return_logits: bool = False, allow_eos=True, style=None,
                 plan=None, prosody_temperature=None):
  """Samples one frame (codes (B, N), end of speech (B,)) from ``h`` (B, W).

  ``key`` is one key, or one per example (B,) so that an example's frames
  do not depend on the rest of its batch. ``temperature`` has one value per
  codebook (N,). With ``n_levels`` k < N only the first k codebooks are
  sampled (the rest are returned as 0 and left out of the frame fed back,
  see ``frame_row``): the adaptive quality mode that trades fidelity for
  latency; the end of speech is still judged on the whole frame. Where
  ``allow_eos`` (scalar or (B,)) is False, codebook 0 never takes code 0,
  so the frame cannot be the all-zero end of speech.

  With the prosody stream the frame's plan comes first (``plan_frame``, at
  ``prosody_temperature``, default codebook 0's), codebook 0 and the
  decoder read its state, and a third value is returned: the frame's
  (F0 ids, energy ids).
  """
  n = model.n_codebooks
  levels = n if n_levels is None else n_levels
  b = h.shape[0]
  stream = getattr(model, "prosody", None)
  tokens = None
  if stream is not None:
    pt = temperature[0] if prosody_temperature is None else \
        prosody_temperature
    h, tokens = plan_frame(model, h, split_keys(derived_key(key, 1), 3), pt,
                           top_k, style, plan)
  noise = frame_noise(model, key, b, top_k, top_p)
  # Ids past the codec's codebook (the special ids) are never sampled.
  ids = jnp.arange(model.audio_vocab)
  valid = ids < model.codebook_size
  logits0 = jnp.where(valid, model.codebook0_head(h), NEG_INF)
  no_eos = ~jnp.broadcast_to(jnp.asarray(allow_eos), (b,))
  logits0 = jnp.where(no_eos[:, None] & (ids == 0)[None], NEG_INF, logits0)
  c0 = sample(logits0, None, temperature[0], top_k, top_p, noise[0])
  codes = jnp.zeros((b, n), jnp.int32).at[:, 0].set(c0)
  all_logits = jnp.zeros((b, n, logits0.shape[-1]), jnp.float32)
  all_logits = all_logits.at[:, 0].set(logits0.astype(jnp.float32))

  dec = model.decoder
  cache = dec.init_cache(b, n)
  k_index = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, n))

  def run(x, i, cache):
    pos = jnp.full((b, 1), i, jnp.int32)
    mask = (k_index <= i)[:, None, None, :]
    out, cache = dec(model.projection(x), pos, mask, cache=cache,
                     cache_index=i)
    return out[:, 0], cache

  _, cache = run(h[:, None, :].astype(model.dtype), 0, cache)
  heads = model.audio_head[...]

  def body(i, carry):
    codes, cache, all_logits = carry
    prev = jax.lax.dynamic_index_in_dim(codes, i - 1, axis=1, keepdims=False)
    emb = model.audio_embed(prev + (i - 1) * model.audio_vocab)
    out, cache = run(emb[:, None, :], i, cache)
    w = jax.lax.dynamic_index_in_dim(heads, i - 1, axis=0, keepdims=False)
    logits = jnp.where(valid, jnp.dot(out, w.astype(out.dtype)), NEG_INF)
    logits = logits.astype(jnp.float32)
    noise_i = jax.lax.dynamic_index_in_dim(noise, i, axis=0, keepdims=False)
    t_i = jax.lax.dynamic_index_in_dim(temperature, i, axis=0, keepdims=False)
    c = sample(logits, None, t_i, top_k, top_p, noise_i)
    codes = jax.lax.dynamic_update_index_in_dim(codes, c, i, axis=1)
    all_logits = jax.lax.dynamic_update_index_in_dim(all_logits, logits, i,
                                                     axis=1)
    return codes, cache, all_logits

  codes, cache, all_logits = jax.lax.fori_loop(1, levels, body,
                                               (codes, cache, all_logits))
  if return_logits:
    return codes, all_logits
  if levels == n:
    eos = ~jnp.any(codes != 0, axis=1)
    return (codes, eos) if tokens is None else (codes, eos, tokens)
  # Reduced quality: a frame whose k sampled codes are all 0 may or may not
  # be the end of speech. Only then the rest of the frame is sampled (rare:
  # code 0 of codebook 0 first), and the frame ends speech iff all N codes
  # are 0, as for the full model. The k codes kept are unchanged.
  prefix_zero = ~jnp.any(codes[:, :levels] != 0, axis=1)

  def finish(carry):
    return jax.lax.fori_loop(levels, n, body, carry)[0]

  full = jax.lax.cond(jnp.any(prefix_zero), finish, lambda c: c[0],
                      (codes, cache, all_logits))
  eos = prefix_zero & ~jnp.any(full != 0, axis=1)
  kept = jnp.where(jnp.arange(n) < levels, codes, 0)
  return (kept, eos) if tokens is None else (kept, eos, tokens)


def generate_frames(model, state: dict, key: jax.Array, n_frames: int,
                    temperature: jax.Array, top_k: int = 0, top_p: float = 1.0,
                    n_levels: int | None = None, allow_eos=None, plan=None,
                    prosody_temperature=None):
  """``n_frames`` frames in one compiled loop.

  Returns (codes (F, B, N), end of speech (F, B), state). ``key``: one key
  or one per example (see ``decode_frame``). ``allow_eos`` (F,) or (F, B)
  says per frame whether it may end the speech (default: all may).

  With the prosody stream, ``plan`` holds the sketch to follow ((F, B)
  arrays, see ``plan_frame``; None: every token sampled) and a fourth
  value is returned: the frames' (F0 ids, energy ids), each (F, B).
  """
  allow = (jnp.ones((n_frames,), bool) if allow_eos is None
           else jnp.asarray(allow_eos))
  on = getattr(model, "prosody", None) is not None

  def step(state, inp):
    k, ok, given = inp
    out = decode_frame(model, state["h"], k, temperature, top_k, top_p,
                       n_levels, allow_eos=ok,
                       style=state.get("style"), plan=given,
                       prosody_temperature=prosody_temperature)
    if not on:
      codes, eos = out
      return append_frame(model, state, codes, n_levels), (codes, eos)
    codes, eos, tokens = out
    return (append_frame(model, state, codes, n_levels, prosody=tokens),
            (codes, eos, tokens))

  state, out = jax.lax.scan(step, state,
                            (split_keys(key, n_frames), allow, plan))
  return (*out[:2], state) + ((out[2],) if on else ())
