"""Speculative depth decoding: draft codebooks cheaply, verify them at once.

The depth decoder spends N-1 sequential steps per frame, each reading all of
its weights for one token. Here a frame's codebooks 1..N-1 are produced in
rounds instead: a cheap drafter proposes the next ``k`` codes one by one,
then ONE teacher-forced pass of the full decoder over those ``k`` drafts
gives the decoder's own distribution at every drafted position. Drafts are
accepted left to right by the speculative-sampling rule (accept draft x with
probability min(1, p(x) / q(x)), p the decoder's and q the drafter's
distribution after the same temperature / top-k / top-p); at the first
rejection the code is resampled from norm(max(0, p - q)); when all ``k``
are accepted the pass's last position (which already saw the last draft)
gives the next code for free. Every code is thus distributed exactly as in
``decode.decode_frame`` (Leviathan et al. 2023, Chen et al. 2023); with
temperature 0 the codes are the plain greedy ones. The next round starts
after the last code kept.

Drafter: the decoder's own early exit, its first ``draft_layers`` blocks
followed by its final norm and the same codebook heads. It needs no
training, no new parameters and no training switch, and it cannot drift
from the checkpoint it drafts for; its KV entries for the first layers are
exactly the full decoder's (same inputs, same weights), so the drafter
shares the frame's cache rather than keeping its own, and the verification
pass rewrites them anyway. Parallel heads on the backbone state would draft
all ``k`` codes in one shot but need training alongside the decoder and a
checkpoint format change, for a speedup the early exit already bounds.

Static shapes throughout: ``k`` and ``draft_layers`` are Python ints, the
rounds run in a ``lax.while_loop`` per example (``jax.vmap`` over the
batch, so each example advances by its own accepted count), acceptance is
masks and ``where``. The decoder cache holds N + k + 1 slots so that a
round near the frame's end writes past the last codebook instead of being
clamped onto earlier slots; those slots are never attended by a kept
position. The model must be ``decode.unrolled`` (per-layer blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from csm_jax.inference import decode
from csm_jax.inference.sampling import (NEG_INF, derived_key, filter_top_k,
                                       filter_top_p, sample)
from csm_jax.model.transformer import UnrolledTransformer


def _filtered(logits, temperature, top_k: int, top_p: float):
  """Rows (T, V) of logits as the sampler filters them, and their probs.

  ``temperature`` (T,): rows at temperature 0 get the one-hot of their
  argmax (the greedy choice), so the acceptance rule needs no special case.
  """
  t = jnp.maximum(temperature, 1e-6)[:, None]
  scaled = filter_top_p(filter_top_k(logits / t, top_k), top_p)
  hot = jax.nn.one_hot(jnp.argmax(logits, -1), logits.shape[-1])
  probs = jnp.where(temperature[:, None] > 0, jax.nn.softmax(scaled, -1), hot)
  return scaled, probs


def _early_exit(dec: UnrolledTransformer, x, positions, mask, cache, index,
                layers: int):
  """The first ``layers`` blocks + the final norm; updates their caches."""
  rope = dec.spec.rope_table(positions)
  ks, vs = list(cache[0]), list(cache[1])
  for i in range(layers):
    x, (ks[i], vs[i]) = dec.blocks[i](x, rope, mask, (ks[i], vs[i]), index)
  return dec.norm(x), (ks, vs)


def check_model(model, draft: int, draft_layers: int) -> None:
  """Raises ValueError when ``model`` cannot be decoded speculatively."""
  dec = model.decoder
  if not isinstance(dec, UnrolledTransformer):
    raise ValueError("speculative decoding needs the per-layer decoder "
                     "(decode.unrolled(model))")
  if draft < 1:
    raise ValueError(f"draft length must be >= 1, got {draft}")
  if not 1 <= draft_layers <= dec.spec.depth:
    raise ValueError(f"draft_layers={draft_layers} but the decoder has "
                     f"{dec.spec.depth} layers")


def _slots_at(first, t: int, size: int):
  """Positions (1, t) from ``first`` and their causal mask over the cache."""
  pos = first + jnp.arange(t, dtype=jnp.int32)
  slots = jnp.arange(size, dtype=jnp.int32)
  return pos[None], (slots[None, :] <= pos[:, None])[None, None]


def start_frame(model, h, draft: int):
  """One example's decoder cache after position 0 (the state ``h`` (W,)).

  The cache has N + draft + 1 slots (see the module docstring).
  """
  dec = model.decoder
  size = model.n_codebooks + draft + 1
  cache = dec.init_cache(1, size)
  pos, mask = _slots_at(jnp.int32(0), 1, size)
  x0 = model.projection(h[None, None].astype(model.dtype))
  _, cache = dec(x0, pos, mask, cache=cache, cache_index=0)
  return cache


def depth_codes(model, cache, codes, key, temperature, top_k: int,
                top_p: float, start, stop, draft: int, draft_layers: int = 1):
  """Codebooks start+1..stop of one example's frame, speculatively.

  ``cache``: the example's decoder cache, valid for positions 0..start
  (``start_frame``, or a previous call's); codes: (N,) with codebooks
  0..start known (the rest are overwritten); key: this example's key;
  ``start`` / ``stop``: scalars. Returns (codes (N,), cache, stats) with
  stats {"evaluated", "accepted"} (N,) int32: per codebook, drafts compared
  against the decoder and drafts kept, and "rounds" () the verification
  passes run. Meant to be called under ``jax.vmap``.
  """
  n, vocab, k = model.n_codebooks, model.audio_vocab, draft
  dec = model.decoder
  size = n + k + 1
  valid = jnp.arange(vocab) < model.codebook_size
  heads = model.audio_head[...]
  mask_at = lambda first, t: _slots_at(first, t, size)

  def head_logits(out, index):
    w = jnp.take(heads, jnp.minimum(index, n - 2), axis=0, mode="clip")
    logits = jnp.einsum("td,tdv->tv", out, w.astype(out.dtype))
    return jnp.where(valid, logits.astype(jnp.float32), NEG_INF)

  def embed(tokens, first_codebook):
    cb = jnp.minimum(first_codebook + jnp.arange(tokens.shape[0]), n - 1)
    return model.projection(model.audio_embed(tokens + cb * vocab)[None])

  temps = lambda first, t: jnp.take(
      temperature, jnp.minimum(first + jnp.arange(t), n - 1), mode="clip")
  index = jnp.arange(n)

  # Every round's random numbers, drawn at once: each round keeps at least
  # one code, so n - 1 rounds are the most a frame runs. On CPU each call
  # of the generator is a loop of its own (three calls here instead of
  # 2k + 4 per round; docs/speed.md).
  rounds = n - 1
  kd, ku, kx = jax.random.split(key, 3)
  g_draft = jax.random.gumbel(kd, (rounds, k, vocab))
  u_accept = jax.random.uniform(ku, (rounds, k))
  g_resid = jax.random.gumbel(kx, (rounds, vocab))

  def round_(carry):
    j, codes, cache, r, evaluated, accepted = carry
    at = jnp.minimum(r, rounds - 1)
    remain = stop - j
    # Drafts for codebooks j+1..j+k, position j+1+t reading code j+t.
    last = jax.lax.dynamic_index_in_dim(codes, j, keepdims=False)
    prev, drafts, q_rows = last, [], []
    for t in range(k):
      p = j + 1 + t
      pos, mask = mask_at(p, 1)
      out, cache = _early_exit(dec, embed(prev[None], p - 1), pos, mask,
                               cache, p, draft_layers)
      logits = head_logits(out[0], (p - 1)[None])
      scaled, q = _filtered(logits, temps(p, 1), top_k, top_p)
      drawn = jnp.argmax(scaled[0] + g_draft[at, t])  # Gumbel-max
      prev = jnp.where(temps(p, 1)[0] > 0, drawn,
                       jnp.argmax(logits[0])).astype(jnp.int32)
      drafts.append(prev)
      q_rows.append(q[0])
    d = jnp.stack(drafts)                          # (k,)
    q = jnp.stack(q_rows)                          # (k, V)
    # One full-decoder pass over code j and the k drafts: the decoder's
    # distributions for codebooks j+1..j+k+1.
    tokens = jnp.concatenate([last[None], d])
    pos, mask = mask_at(j + 1, k + 1)
    out, cache = dec(embed(tokens, j), pos, mask, cache=cache,
                     cache_index=j + 1)
    logits = head_logits(out[0], j + jnp.arange(k + 1))
    _, pv = _filtered(logits, temps(j + 1, k + 1), top_k, top_p)
    rows = jnp.arange(k)
    pd, qd = pv[rows, d], q[rows, d]
    u = u_accept[at]
    ok = (u * qd < pd) & (rows < remain)
    m = jnp.sum(jnp.cumprod(ok.astype(jnp.int32)))
    extra = m < remain
    # The first rejected position: the residual; all accepted: the bonus.
    pm = pv[m]
    qm = q[jnp.minimum(m, k - 1)]
    resid = jnp.where(m < k, jnp.maximum(pm - qm, 0.0), pm)
    resid = jnp.where(jnp.sum(resid) > 0, resid, pm)
    drawn = jnp.argmax(jnp.log(resid) + g_resid[at])
    greedy = temps(j + 1 + m, 1)[0] <= 0
    code = jnp.where(greedy, jnp.argmax(resid), drawn).astype(jnp.int32)
    rel = index - (j + 1)
    kept = jnp.take(jnp.concatenate([d, jnp.zeros((1,), jnp.int32)]),
                    jnp.clip(rel, 0, k), mode="clip")
    codes = jnp.where((rel >= 0) & (rel < m), kept, codes)
    codes = jnp.where(extra & (rel == m), code, codes)
    seen = (rel >= 0) & (rel <= m) & (rel < k) & (rel < remain)
    evaluated = evaluated + seen.astype(jnp.int32)
    accepted = accepted + ((rel >= 0) & (rel < m)).astype(jnp.int32)
    return (j + m + extra.astype(jnp.int32), codes, cache, r + 1, evaluated,
            accepted)

  zeros = jnp.zeros((n,), jnp.int32)
  carry = (jnp.asarray(start, jnp.int32), codes, cache, jnp.int32(0), zeros,
           zeros)
  j, codes, cache, r, evaluated, accepted = jax.lax.while_loop(
      lambda c: c[0] < stop, round_, carry)
  return codes, cache, {"evaluated": evaluated, "accepted": accepted,
                        "rounds": r}


def _per_example(fn, b: int):
  """``jax.vmap(fn)``, or at batch 1 ``fn`` on the one example.

  Under ``vmap`` each example's ``while_loop`` runs until the batch is done,
  selecting every carry (the decoder cache) per round, and XLA:CPU lowers
  the batched top-k to a full sort (89 us a call at debug dims against a
  few us): at batch 1, the streaming case, neither is needed.
  """
  if b > 1:
    return jax.vmap(fn)
  def one(*args):
    out = fn(*jax.tree.map(lambda x: x[0], args))
    return jax.tree.map(lambda x: x[None], out)
  return one


def _example_keys(key, b: int):
  return key if key.ndim == 1 else jax.random.split(key, b)


def decode_frame(model, h: jax.Array, key: jax.Array, temperature: jax.Array,
                 top_k: int = 0, top_p: float = 1.0, n_levels: int | None = None,
                 allow_eos=True, style=None, plan=None,
                 prosody_temperature=None, draft: int = 2,
                 draft_layers: int = 1, return_stats: bool = False):
  """``decode.decode_frame`` with speculative depth decoding.

  Same arguments and returns (codes (B, N), end of speech (B,), and with
  the prosody stream the frame's tokens), codebook 0 drawn with the same
  key as there; ``draft`` codes are drafted per round by the decoder's
  first ``draft_layers`` blocks. With ``return_stats`` a stats dict
  (``depth_codes``'s, each with a leading batch axis) is appended.
  """
  check_model(model, draft, draft_layers)
  n = model.n_codebooks
  levels = n if n_levels is None else n_levels
  b = h.shape[0]
  stream = getattr(model, "prosody", None)
  tokens = None
  if stream is not None:
    pt = temperature[0] if prosody_temperature is None else \
        prosody_temperature
    h, tokens = decode.plan_frame(
        model, h, decode.split_keys(derived_key(key, 1), 3), pt, top_k, style,
        plan)
  # Codebook 0 exactly as decode.decode_frame draws it: the frame's noise,
  # of which only row 0 is used here (N x k numbers per example; drawing
  # row 0 apart would cost plain decoding a second generator call).
  noise0 = decode.frame_noise(model, key, b, top_k, top_p)[0]
  ids = jnp.arange(model.audio_vocab)
  logits0 = jnp.where(ids < model.codebook_size, model.codebook0_head(h),
                      NEG_INF)
  no_eos = ~jnp.broadcast_to(jnp.asarray(allow_eos), (b,))
  logits0 = jnp.where(no_eos[:, None] & (ids == 0)[None], NEG_INF, logits0)
  c0 = sample(logits0, None, temperature[0], top_k, top_p, noise0)
  codes = jnp.zeros((b, n), jnp.int32).at[:, 0].set(c0)
  depth_keys = _example_keys(derived_key(key, 2), b)

  def run(cache, codes, k, start, stop):
    return depth_codes(model, cache, codes, k, temperature, top_k, top_p,
                       start, stop, draft, draft_layers)

  batched = _per_example(run, b)
  cache = _per_example(lambda x: start_frame(model, x, draft), b)(h)
  codes, cache, stats = batched(cache, codes, depth_keys,
                                jnp.zeros((b,), jnp.int32),
                                jnp.full((b,), levels - 1, jnp.int32))
  if levels == n:
    eos = ~jnp.any(codes != 0, axis=1)
    kept = codes
  else:
    # Reduced quality, as decode.decode_frame: only a frame whose k codes
    # are all 0 is completed (more rounds on its cache, a fresh key), to
    # judge the end of speech on the whole frame; the others stop at once.
    prefix_zero = ~jnp.any(codes[:, :levels] != 0, axis=1)
    more_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1 << 16))(
        depth_keys)
    full, _, more = batched(cache, codes, more_keys,
                            jnp.full((b,), levels - 1, jnp.int32),
                            jnp.where(prefix_zero, n - 1, levels - 1))
    stats = jax.tree.map(jnp.add, stats, more)
    eos = prefix_zero & ~jnp.any(full != 0, axis=1)
    kept = jnp.where(jnp.arange(n) < levels, codes, 0)
  out = (kept, eos) if tokens is None else (kept, eos, tokens)
  return out + (stats,) if return_stats else out


def generate_frames(model, state: dict, key: jax.Array, n_frames: int,
                    temperature: jax.Array, top_k: int = 0, top_p: float = 1.0,
                    n_levels: int | None = None, allow_eos=None, plan=None,
                    prosody_temperature=None, draft: int = 2,
                    draft_layers: int = 1, return_stats: bool = False):
  """``decode.generate_frames`` with speculative depth decoding.

  Same returns; with ``return_stats`` the stats (``depth_codes``'s, summed
  over the frames, each (B, ...)) are appended last.
  """
  allow = (jnp.ones((n_frames,), bool) if allow_eos is None
           else jnp.asarray(allow_eos))
  on = getattr(model, "prosody", None) is not None

  def step(state, inp):
    k, ok, given = inp
    out = decode_frame(model, state["h"], k, temperature, top_k, top_p,
                       n_levels, allow_eos=ok, style=state.get("style"),
                       plan=given, prosody_temperature=prosody_temperature,
                       draft=draft, draft_layers=draft_layers,
                       return_stats=True)
    *out, stats = out
    tokens = out[2] if on else None
    state = decode.append_frame(model, state, out[0], n_levels,
                                prosody=tokens)
    return state, (tuple(out), stats)

  state, (out, stats) = jax.lax.scan(
      step, state, (decode.split_keys(key, n_frames), allow, plan))
  result = (*out[:2], state) + ((out[2],) if on else ())
  if return_stats:
    result = result + (jax.tree.map(lambda s: jnp.sum(s, axis=0), stats),)
  return result
