"""The Conversational Speech Model: backbone over frames + depth decoder.

Each position is a row of ``n_codebooks`` audio columns and one text column
(last) with a presence mask; the embeddings of present columns are summed.
The backbone's hidden state at row t predicts codebook 0 of row t+1 through
``codebook0_head``; the depth decoder, fed ``[h_t, emb(c0), ..., emb(c_{N-2})]``
through ``projection``, predicts codebooks 1..N-1 of that frame with one head
per codebook. Extra per-row conditioning (``cond``) and prefix vectors
(``prefix``) are hooks for the dual memory, the prosody stream and planning.

With ``model.prosody.enabled`` the model is two-stage (``model.prosody``):
``self.prosody`` predicts each frame's prosody tokens from ``h`` and adds
them to the frame's row as an extra column; codebook 0 and the decoder
read the plan state instead of ``h``. Off, ``self.prosody`` is None and
nothing here differs from the plain CSM.

With the aligned text stream (``model.text_stream``) audio rows also carry
a text token, and ``advance_head`` reads ``h`` to say whether the next row
moves on to the next token; with ``prefix`` it is None.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.model.attention import (PREFIX_SEGMENT, Band, causal_mask,
                                     layout_mask, row_windows)
from csm_jax.config import lora as lora_targets
from csm_jax.config import memory as memory_config
from csm_jax.config import prosody as prosody_config
from csm_jax.config import text_stream
from csm_jax.model.layers import Embed, Linear, Precision, dtype_of, param
from csm_jax.model.lora import LoraSpec
from csm_jax.model.memory import DualMemory
from csm_jax.model.prosody import ProsodyStream
from csm_jax.model.transformer import Transformer, TransformerSpec
from csm_jax.parallel.sharding import constrain


def precision_from(m) -> Precision:
  return Precision(dtype=dtype_of(m.dtype), param_dtype=dtype_of(m.param_dtype),
                   init_std=m.init_std)


def lora_specs(lora_cfg) -> tuple[LoraSpec, LoraSpec]:
  """(backbone, decoder) adapter specs of ``config.train.lora`` (or None)."""
  if lora_cfg is None or not lora_cfg.rank:
    return LoraSpec(), LoraSpec()
  targets = lora_targets.resolve_targets(lora_cfg.targets)
  return tuple(LoraSpec(lora_cfg.rank, float(lora_cfg.alpha),
                        lora_targets.stack_targets(targets, stack))
               for stack in lora_targets.STACKS)


class CSM(nnx.Module):
  """Backbone, heads and depth decoder, built from ``config.model``.

  ``lora`` (``config.train.lora``) adds adapters to the projections it
  targets (``model.lora``).
  """

  def __init__(self, m, rngs: nnx.Rngs, lora=None):
    prec = precision_from(m)
    lora_b, lora_d = lora_specs(lora)
    self.n_codebooks = m.n_codebooks
    self.audio_vocab = m.audio_vocab
    self.codebook_size = m.codebook_size
    self.text_window = m.text_window
    self.audio_window = m.audio_window
    bspec = TransformerSpec.from_config(m.backbone, m, "embed", lora_b)
    dspec = TransformerSpec.from_config(m.decoder, m, "dec_embed", lora_d)
    w, wd = bspec.width, dspec.width
    self.text_embed = Embed(m.text_vocab, w, ("vocab", "embed"), prec, rngs)
    # One table for all codebooks, row = token + codebook * audio_vocab.
    self.audio_embed = Embed(m.n_codebooks * m.audio_vocab, w,
                             ("vocab", "embed"), prec, rngs)
    self.backbone = Transformer(bspec, prec, rngs)
    self.codebook0_head = Linear(w, m.audio_vocab, ("embed", "vocab"), prec,
                                 rngs)
    self.projection = Linear(w, wd, ("embed", "dec_embed"), prec, rngs)
    self.decoder = Transformer(dspec, prec, rngs)
    self.audio_head = param(rngs, (m.n_codebooks - 1, wd, m.audio_vocab),
                            ("codebooks", "dec_embed", "vocab"), prec,
                            std=1.0 / math.sqrt(wd))
    self.text_head = (Linear(w, m.text_vocab, ("embed", "vocab"), prec, rngs)
                      if m.text_loss_weight > 0 else None)
    self.cond_proj = (Linear(m.cond_dim, w, (None, "embed"), prec, rngs)
                      if m.cond_dim > 0 else None)
    # Created last, so every other parameter draws the same initial values
    # with the stream on or off.
    self.prosody = (ProsodyStream(m.prosody, w, prec, rngs)
                    if prosody_config.enabled(m) else None)
    # The dual memory (model.memory), after everything else for the same
    # reason; its prefix enters through ``prefix`` (model.memory).
    self.memory = (DualMemory(m.memory, w, prec, rngs,
                              memory_config.signature(m))
                   if memory_config.enabled(m) else None)
    # The aligned text stream's advance head (model.text_stream): does the
    # next row move on to the next token? Last, for the same reason.
    self.advance_head = (Linear(w, 2, ("embed", None), prec, rngs)
                         if text_stream.aligned(m) else None)
    # The tokens after the row's own (model.text_lookahead), one table
    # per place ahead: row = token + place * text_vocab.
    self.text_vocab = m.text_vocab
    ahead = text_stream.lookahead(m)
    self.ahead_embed = (Embed(ahead * m.text_vocab, w, ("vocab", "embed"),
                              prec, rngs) if ahead else None)
    self.dtype = prec.dtype

  # -- embeddings -----------------------------------------------------------
  def audio_ids(self, codes: jax.Array, first_codebook: int = 0) -> jax.Array:
    """Rows of the shared audio table for codes (..., k) of codebooks
    first_codebook .. first_codebook + k - 1."""
    k = codes.shape[-1]
    offsets = (jnp.arange(k) + first_codebook) * self.audio_vocab
    return codes + offsets

  def embed_frames(self, audio_tokens, text_tokens, mask, prosody=None):
    """Sum of present columns' embeddings: (B,T,C),(B,T),(B,T,C+1) -> (B,T,W).

    On the aligned text stream ``text_tokens`` is (B, T, 1 + lookahead):
    the row's token and the tokens after it, each place its own table.

    ``prosody``: (F0 ids, energy ids, style ids, present), each (B, T), the
    prosody column of the stream (ignored when the stream is off).
    """
    a = self.audio_embed(self.audio_ids(audio_tokens))  # (B,T,C,W)
    a = jnp.sum(a * mask[..., :-1, None].astype(a.dtype), axis=2)
    if text_tokens.ndim == audio_tokens.ndim:
      # Aligned text stream: (B, T, 1 + lookahead); pad (0) is absent.
      ahead = text_tokens[..., 1:]
      text_tokens = text_tokens[..., 0]
      if self.ahead_embed is not None and ahead.shape[-1]:
        rows = ahead + jnp.arange(ahead.shape[-1]) * self.text_vocab
        e = self.ahead_embed(rows) * (ahead > 0)[..., None].astype(
            self.dtype)
        text_extra = jnp.sum(e, axis=2)
      else:
        text_extra = 0.0
    else:
      text_extra = 0.0
    t = ((self.text_embed(text_tokens) + text_extra)
         * mask[..., -1:].astype(self.dtype))
    x = a + t
    if prosody is not None and self.prosody is not None:
      x = x + self.prosody.column(*prosody).astype(x.dtype)
    return constrain(x, ("batch", "seq", "act_embed"))

  # -- backbone -------------------------------------------------------------
  def backbone_rows(self, audio_tokens, text_tokens, mask, positions,
                    segment_ids, cond=None, prefix=None, prosody=None):
    """Backbone inputs of rows: (x, positions, segments, windows).

    ``prefix`` vectors (B, P, W) come first, in segment ``PREFIX_SEGMENT``
    at positions -P..-1, so every later row of the example can see them.
    ``prosody``: the prosody column (``embed_frames``).
    """
    x = self.embed_frames(audio_tokens, text_tokens, mask, prosody)
    if cond is not None:
      if self.cond_proj is None:
        raise ValueError("cond given but config.model.cond_dim is 0")
      x = x + self.cond_proj(cond)
    windows = row_windows(mask, self.text_window, self.audio_window)
    seg = segment_ids
    if prefix is not None:
      b, p = segment_ids.shape[0], prefix.shape[1]
      x = jnp.concatenate([prefix.astype(x.dtype), x], axis=1)
      pidx = jnp.broadcast_to(jnp.arange(-p, 0, dtype=jnp.int32), (b, p))
      positions = jnp.concatenate([pidx, positions], axis=1)
      seg = jnp.concatenate(
          [jnp.full((b, p), PREFIX_SEGMENT, seg.dtype), seg], axis=1)
      windows = jnp.concatenate(
          [jnp.full((b, p), self.audio_window, jnp.int32), windows], axis=1)
    return x, positions, seg, windows

  def run_backbone(self, rows, cache=None, start=0, cached_segments=None,
                   prefix_len: int = 0):
    """The backbone over ``backbone_rows`` output, with or without a cache.

    The one place the attention mask is built (``layout_mask``), for
    training (rows attend to each other) and for cached decoding (rows at
    cache slots ``start..start+T-1`` attend to every filled slot, whose
    segment ids are ``cached_segments`` (B, S) after this call's write).
    Without a cache, ``prefix_len`` (the rows' leading prefix vectors)
    tells attention which keys the mask can allow (``Band``).
    Returns (hidden (B, T, W), new cache or None).
    """
    x, positions, seg, windows = rows
    b, t = seg.shape
    q_index = start + jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    if cache is None:
      k_index, k_seg = q_index, seg
    else:
      s = cached_segments.shape[1]
      k_index = jnp.broadcast_to(jnp.arange(s, dtype=jnp.int32), (b, s))
      k_seg = cached_segments
    attn_mask = layout_mask(q_index, seg, windows, k_index, k_seg)
    band = None
    if cache is None:
      band = Band(max(self.text_window, self.audio_window), prefix_len)
    return self.backbone(x, positions, attn_mask, cache=cache,
                         cache_index=start if cache is not None else None,
                         band=band)

  def backbone_hidden(self, audio_tokens, text_tokens, mask, positions,
                      segment_ids, cond=None, prefix=None, prosody=None):
    """Backbone outputs (B, T, W) for a packed batch of frames."""
    rows = self.backbone_rows(audio_tokens, text_tokens, mask, positions,
                              segment_ids, cond, prefix, prosody)
    h, _ = self.run_backbone(
        rows, prefix_len=0 if prefix is None else prefix.shape[1])
    if prefix is not None:
      h = h[:, prefix.shape[1]:]
    return h

  # -- depth decoder ---------------------------------------------------------
  def decoder_logits(self, h, codes, levels=None):
    """Logits for codebooks 1..N-1 given backbone states and the frame codes.

    h: (M, W) backbone states; codes: (M, N) the frame's codes (teacher
    forcing). Returns (M, N-1, audio_vocab), or (M, L, audio_vocab) for the
    codebooks ``levels`` (L ints in 1..N-1) only: the decoder still runs over
    the whole frame, but only those heads and logits are computed.
    """
    n = self.n_codebooks
    emb = self.audio_embed(self.audio_ids(codes[:, :n - 1]))  # (M, N-1, W)
    seq = jnp.concatenate([h[:, None, :].astype(emb.dtype), emb], axis=1)
    x = self.projection(seq)
    m = x.shape[0]
    pos = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (m, n))
    hd, _ = self.decoder(x, pos, causal_mask(m, n))
    heads = self.audio_head[...].astype(hd.dtype)
    if levels is None:
      return jnp.einsum("mcd,cdv->mcv", hd[:, 1:], heads)
    return jnp.einsum("mcd,cdv->mcv", jnp.take(hd, levels, axis=1),
                      jnp.take(heads, levels - 1, axis=0))

  def __call__(self, audio_tokens, text_tokens, mask, positions, segment_ids,
               cond=None, prefix=None, prosody=None):
    """(h, codebook-0 logits of h); with the prosody stream on, codebook 0
    is read from the plan state instead (``csm_loss``, decoding)."""
    h = self.backbone_hidden(audio_tokens, text_tokens, mask, positions,
                             segment_ids, cond, prefix, prosody)
    return h, self.codebook0_head(h)
