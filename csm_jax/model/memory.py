"""The dual conversational memory: semantic and prosodic banks of slots.

Pure functions of an explicit ``MemoryState`` (no state hides in modules):

  f_b(turn)  = per-slot attention pooling of the turn's backbone states over
               the rows bank ``b`` reads (semantic: text rows; prosodic:
               audio frames, plus the turn's prosody features), projected
               to the slot width
  m_t        = gamma * m_{t-1} + (1 - gamma) * f_b(turn_t)   per slot
  read(m, n) = m / (1 - gamma^n)   (the decay-weighted mean of the n turns
               written so far; 0 before any) -> one prefix vector per slot

A slot with gamma = 1 (no decay) keeps the sum, m_t = m_{t-1} + f, and
reads m / n: the plain mean, the limit of the formula above. A bank with 0
slots is off: it has no parameters and puts no prefix vector.

Each slot has its own decay (``config.memory.decays``: fixed, or learned as
a sigmoid per slot). A turn is encoded by the backbone over that turn's
rows alone, with no prefix, so writing a turn costs the same whatever the
conversation's length and the state is a constant size: (B, slots, dim)
per bank and a turn count. ``update`` is the one per-turn function;
training (``memory_from_turns``) runs the same ``write`` over a window of
turns with ``lax.scan``. The prefix enters the backbone through its
``prefix`` hook (``CSM.backbone_rows``): every row of the example attends
to it. The heads of the conversational loss terms live here as well
(``model.memory_loss``).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.config import memory as memory_config
from csm_jax.config.errors import UserError
from csm_jax.model.layers import Linear, Precision, param
from csm_jax.parallel.sharding import constrain

SEMANTIC_DIM = 128   # the corpus's per-turn semantic vector (data.features)
SPEAKER_DIM = 64     # the character loss's voice embedding
_NEG = -1e9          # masked pooling scores: finite, so an empty turn is 0


class MemoryStateError(UserError, ValueError):
  """A memory state does not belong to this model's memory config."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MemoryState:
  """What the memory carries from turn to turn; float32 whatever the model.

  ``semantic`` (B, S_sem, D), ``prosodic`` (B, S_pro, D), ``turns`` (B,)
  turns written. ``signature`` (static) names the memory config it was
  made by (``config.memory.signature``).
  """

  semantic: jax.Array
  prosodic: jax.Array
  turns: jax.Array
  signature: str = dataclasses.field(metadata=dict(static=True), default="")


def _logit(p: float) -> float:
  return math.log(p / (1.0 - p))


class MemoryBank(nnx.Module):
  """One bank: slot queries, write and read projections, slot decays."""

  def __init__(self, bank, width: int, dim: int, prec: Precision,
               rngs: nnx.Rngs, features: int = 0):
    s = int(bank.slots)
    self.slots, self.dim, self.query_width = s, dim, width
    self.dtype = prec.dtype
    self.learned = bool(bank.learned)
    self.fixed = tuple(float(g) for g in memory_config.decays(bank))
    if not s:
      return
    self.query = param(rngs, (s, width), (None, "embed"), prec,
                       std=1.0 / math.sqrt(width))
    self.write_proj = param(rngs, (width, s, dim), ("embed", None, None),
                            prec, std=1.0 / math.sqrt(width))
    self.feature_proj = (param(rngs, (features, s, dim), (None, None, None),
                               prec, std=1.0 / math.sqrt(features))
                         if features else None)
    self.read_proj = param(rngs, (s, dim, width), (None, None, "embed"), prec,
                           std=1.0 / math.sqrt(dim))
    self.slot_embed = param(rngs, (s, width), (None, "embed"), prec)
    if self.learned:
      self.decay_logit = nnx.Param(
          jnp.asarray([_logit(g) for g in self.fixed], jnp.float32),
          logical_axes=(None,))

  def gamma(self) -> jax.Array:
    """(slots,) decays, float32."""
    if self.learned and self.slots:
      return jax.nn.sigmoid(self.decay_logit[...].astype(jnp.float32))
    return jnp.asarray(self.fixed, jnp.float32).reshape(self.slots)

  def _no_decay(self) -> jax.Array:
    """(slots,) bool: the slots that keep the plain mean (gamma = 1)."""
    return jnp.asarray([g >= 1.0 and not self.learned for g in self.fixed],
                       bool).reshape(self.slots)

  def encode(self, h, rows, features=None, present=None) -> jax.Array:
    """f(turn) (B, S, D) from states h (B, R, W) over ``rows`` (B, R)."""
    if not self.slots:
      return jnp.zeros((h.shape[0], 0, self.dim), jnp.float32)
    dt = self.dtype
    h = h.astype(dt)
    q = self.query[...].astype(dt)
    scores = jnp.einsum("brw,sw->bsr", h, q).astype(jnp.float32)
    scores = scores / math.sqrt(h.shape[-1])
    scores = jnp.where(rows[:, None, :], scores, _NEG)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = weights * jnp.any(rows, axis=-1)[:, None, None]
    pooled = jnp.einsum("bsr,brw->bsw", weights.astype(dt), h)
    f = jnp.einsum("bsw,wsd->bsd", pooled, self.write_proj[...].astype(dt))
    if self.feature_proj is not None and features is not None:
      extra = jnp.einsum("bf,fsd->bsd", features.astype(dt),
                         self.feature_proj[...].astype(dt))
      f = f + extra * present[:, None, None].astype(dt)
    return f.astype(jnp.float32)

  def write(self, m, f, valid) -> jax.Array:
    """m' = gamma m + (1 - gamma) f where ``valid`` (B,); else m."""
    g = self.gamma()[None, :, None]
    keep_all = self._no_decay()[None, :, None]
    new = g * m + jnp.where(keep_all, 1.0, 1.0 - g) * f.astype(jnp.float32)
    return jnp.where(valid[:, None, None], new, m)

  def readout(self, m, n) -> jax.Array:
    """The decay-weighted mean of the written turns (B, S, D); 0 for none."""
    seen = (n > 0)[:, None]
    power = self.gamma()[None, :] ** jnp.maximum(n, 1)[:, None].astype(
        jnp.float32)
    # A safe denominator where nothing was written keeps gradients finite.
    count = jnp.maximum(n, 1)[:, None].astype(jnp.float32)
    denom = jnp.where(seen, jnp.where(self._no_decay()[None, :], count,
                                      1.0 - power), 1.0)
    return jnp.where(seen[..., None], m / denom[..., None], 0.0)

  def prefix(self, m, n) -> jax.Array:
    """Prefix vectors (B, S, W): the readout projected, plus slot embeddings."""
    dt = self.dtype
    if not self.slots:
      return jnp.zeros((m.shape[0], 0, self.query_width), dt)
    r = self.readout(m, n).astype(dt)
    out = jnp.einsum("bsd,sdw->bsw", r, self.read_proj[...].astype(dt))
    return out + self.slot_embed[...].astype(dt)[None]


class DualMemory(nnx.Module):
  """The semantic and prosodic banks and the conversational loss heads."""

  def __init__(self, mem, width: int, prec: Precision, rngs: nnx.Rngs,
               signature: str = ""):
    dim = int(mem.dim) or width
    n_feat = memory_config.PROSODY_FEATURES if mem.prosody_features else 0
    self.semantic = MemoryBank(mem.semantic, width, dim, prec, rngs)
    self.prosodic = MemoryBank(mem.prosodic, width, dim, prec, rngs,
                               features=n_feat)
    self.features = n_feat
    self.width, self.dim = width, dim
    self.signature = signature
    heads = ("embed", None)
    # Conversational loss heads (model.memory_loss); they are small and
    # always present, so a loss weight can change on resume.
    self.semantic_head = Linear(width, SEMANTIC_DIM, heads, prec, rngs)
    self.speaker_head = Linear(width, SPEAKER_DIM, heads, prec, rngs)
    self.dynamics_head = Linear(width + mem.prosodic.slots * dim,
                                memory_config.PROSODY_FEATURES, heads, prec,
                                rngs)

  @property
  def n_prefix(self) -> int:
    return self.semantic.slots + self.prosodic.slots

  # -- state -----------------------------------------------------------------
  def init_state(self, batch: int) -> MemoryState:
    return MemoryState(
        semantic=jnp.zeros((batch, self.semantic.slots, self.dim), jnp.float32),
        prosodic=jnp.zeros((batch, self.prosodic.slots, self.dim), jnp.float32),
        turns=jnp.zeros((batch,), jnp.int32), signature=self.signature)

  def check_state(self, state, batch: int | None = None) -> None:
    """Raises MemoryStateError unless ``state`` fits this memory."""
    if not isinstance(state, MemoryState):
      raise MemoryStateError(
          f"a memory state is a MemoryState, got {type(state).__name__}")
    if state.signature != self.signature:
      raise MemoryStateError(
          f"memory state made by memory config {state.signature!r}; this "
          f"model's is {self.signature!r} (model.memory)")
    b = state.turns.shape[0] if batch is None else batch
    want = {"semantic": (b, self.semantic.slots, self.dim),
            "prosodic": (b, self.prosodic.slots, self.dim), "turns": (b,)}
    for name, shape in want.items():
      got = tuple(getattr(state, name).shape)
      if got != shape:
        raise MemoryStateError(
            f"memory state field {name!r} has shape {got}, expected {shape} "
            "(model.memory slots and dim)")

  # -- per turn --------------------------------------------------------------
  def encode(self, h, text_rows, audio_rows, features=None, present=None):
    """(f_semantic, f_prosodic) of turns whose backbone states are h."""
    feats = features if self.features else None
    return (self.semantic.encode(h, text_rows),
            self.prosodic.encode(h, audio_rows, feats, present))

  def write(self, state: MemoryState, f_sem, f_pro, valid) -> MemoryState:
    sem = constrain(self.semantic.write(state.semantic, f_sem, valid),
                    ("batch", None, "act_embed"))
    pro = constrain(self.prosodic.write(state.prosodic, f_pro, valid),
                    ("batch", None, "act_embed"))
    return MemoryState(sem, pro, state.turns + valid.astype(jnp.int32),
                       state.signature)

  def prefix(self, state: MemoryState) -> jax.Array:
    """(B, S_sem + S_pro, W): the memory as prefix vectors of an example."""
    p = jnp.concatenate([self.semantic.prefix(state.semantic, state.turns),
                         self.prosodic.prefix(state.prosodic, state.turns)],
                        axis=1)
    return constrain(p, ("batch", None, "act_embed"))


# ----------------------------------------------------------------------------
# Reading turns with the backbone
# ----------------------------------------------------------------------------


def row_kinds(mask):
  """(text rows, audio rows) (.., R) of a turn's column mask (.., R, N+1)."""
  audio = jnp.any(mask[..., :-1], axis=-1)
  return mask[..., -1] & ~audio, audio


def turn_states(model, audio_tokens, text_tokens, mask):
  """Backbone states (B, R, W) of turns laid out alone from position 0;
  ``text_tokens`` (B, R), or (B, R, 1 + lookahead) on the aligned text
  stream (``CSM.embed_frames``)."""
  b, r = mask.shape[:2]
  present = jnp.any(mask, axis=-1)
  positions = jnp.broadcast_to(jnp.arange(r, dtype=jnp.int32), (b, r))
  segments = present.astype(jnp.int32)
  return model.backbone_hidden(audio_tokens, text_tokens, mask, positions,
                               segments)


def pooled_mean(h, rows) -> jax.Array:
  """Mean of h (B, R, W) over ``rows`` (B, R); 0 where there are none."""
  w = rows.astype(jnp.float32)
  total = jnp.einsum("br,brw->bw", w, h.astype(jnp.float32))
  return total / jnp.maximum(jnp.sum(w, axis=-1), 1.0)[:, None]


def update(model, state: MemoryState, turn: dict) -> MemoryState:
  """The memory after one more turn: the per-turn function of inference.

  ``turn``: ``audio_tokens`` (B, R, N), ``text_tokens`` (B, R) (or (B, R,
  1 + lookahead) on the aligned text stream), ``mask`` (B, R, N+1) (the
  turn's rows, ``data.examples.memory_rows.memory_turn_rows``), ``valid``
  (B,) and optionally ``features`` (B, F) with
  ``features_present`` (B,). Same shapes, same compiled function, whatever
  the number of turns already written.
  """
  mem = model.memory
  h = turn_states(model, turn["audio_tokens"], turn["text_tokens"],
                  turn["mask"])
  text_rows, audio_rows = row_kinds(turn["mask"])
  b = h.shape[0]
  feats = turn.get("features")
  present = turn.get("features_present")
  if feats is None:
    feats = jnp.zeros((b, memory_config.PROSODY_FEATURES), jnp.float32)
    present = jnp.zeros((b,), bool)
  f_sem, f_pro = mem.encode(h, text_rows, audio_rows, feats, present)
  return mem.write(state, f_sem, f_pro, turn["valid"])


def memory_from_turns(model, turns: dict, grad_turns: int):
  """The memory after a window of K turns, as training computes it.

  ``turns`` holds the fields of ``update`` with a turn axis after the batch
  (``audio_tokens`` (B, K, R, N), ... ``valid`` (B, K), oldest first). All
  K turns are read by one backbone call (they do not depend on each other);
  the gradient reaches the backbone through the newest ``grad_turns``
  only: the older ones run in a separate call under ``stop_gradient``, so
  they cost no backward pass (docs/memory.md). The writes are the same
  ``write`` as ``update``, scanned over K. Returns (state, per-turn mean
  audio states (B, K, W) for the character loss).
  """
  mem = model.memory
  audio, text, mask = (turns["audio_tokens"], turns["text_tokens"],
                       turns["mask"])
  b, k, r = mask.shape[:3]
  flat = lambda x: x.reshape(b * k, *x.shape[2:])
  # Dimensions are static, so the split is a Python decision.
  old = k - min(grad_turns, k)

  def states(lo, hi):
    if hi <= lo:
      return None
    sub = lambda x: x[:, lo:hi].reshape(b * (hi - lo), *x.shape[2:])
    h = turn_states(model, sub(audio), sub(text), sub(mask))
    return h.reshape(b, hi - lo, r, -1)

  parts = []
  h_old = states(0, old)
  if h_old is not None:
    parts.append(jax.lax.stop_gradient(h_old))
  h_new = states(old, k)
  if h_new is not None:
    parts.append(h_new)
  h = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
  text_rows, audio_rows = row_kinds(mask)
  feats = turns.get("features")
  present = turns.get("features_present")
  if feats is None:
    feats = jnp.zeros((b, k, memory_config.PROSODY_FEATURES), jnp.float32)
    present = jnp.zeros((b, k), bool)
  f_sem, f_pro = mem.encode(flat(h), flat(text_rows), flat(audio_rows),
                            flat(feats), flat(present))
  f_sem = f_sem.reshape(b, k, *f_sem.shape[1:])
  f_pro = f_pro.reshape(b, k, *f_pro.shape[1:])

  def step(state, inp):
    fs, fp, ok = inp
    return mem.write(state, fs, fp, ok), None

  swap = lambda x: jnp.swapaxes(x, 0, 1)
  state, _ = jax.lax.scan(step, mem.init_state(b),
                          (swap(f_sem), swap(f_pro), swap(turns["valid"])))
  pooled = pooled_mean(flat(h), flat(audio_rows)).reshape(b, k, -1)
  return state, pooled


def state_to_numpy(state: MemoryState) -> dict:
  """A state as plain arrays (for saving beside a conversation)."""
  return {"semantic": np.asarray(state.semantic),
          "prosodic": np.asarray(state.prosodic),
          "turns": np.asarray(state.turns), "signature": state.signature}


def state_from_numpy(d: dict) -> MemoryState:
  return MemoryState(jnp.asarray(d["semantic"], jnp.float32),
                     jnp.asarray(d["prosodic"], jnp.float32),
                     jnp.asarray(d["turns"], jnp.int32),
                     str(d.get("signature", "")))
