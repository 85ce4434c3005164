"""Writing conversation turns into the dual memory at generation time.

``MemoryWriter`` holds one compiled ``model.memory.update`` per batch size:
a turn's rows are laid out and cut exactly as in training
(``data.examples.memory_rows.memory_turn_rows``), so writing a turn costs
the same at turn 2 and at turn 200, and the state keeps its shape. On the
aligned text stream a turn is its tag rows and text tokens, text first
(``memory_rows.aligned_memory_rows``), the same rows training reads. A turn's
prosody features come from its audio by the corpus's own extraction
(``data.features.prosody``, then the fixed normalization); without audio
they are left out (the bank reads the frames alone), as for a corpus built
without features.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.config import memory as memory_config
from csm_jax.config import text_stream
from csm_jax.data.examples import memory_rows
from csm_jax.data.examples.frames import Turn
from csm_jax.model import memory as memory_lib
from csm_jax.model.memory import MemoryState, MemoryStateError


@dataclasses.dataclass
class MemoryTurn:
  """A turn to write: token ids (speaker tag included), its codes and,
  optionally, its audio (float32 mono at ``sample_rate``) and text. On the
  aligned text stream ``text_ids`` are the tag rows and ``tokens`` the
  text's tokens (``memory_turn``)."""

  text_ids: np.ndarray
  codes: np.ndarray
  audio: np.ndarray | None = None
  sample_rate: int = 0
  text: str = ""
  tokens: np.ndarray | None = None


def memory_turn(config, tokenizer, speaker: int, text: str, codes,
                audio=None, sample_rate: int = 0,
                emotion: str | None = None) -> MemoryTurn:
  """A turn as the memory of ``config``'s model writes it: its tokenized
  text (tag rows and tokens apart on the aligned text stream, as training
  holds them) and ``codes`` (F, N), none for a turn known by its words."""
  codes = np.asarray(codes, np.int32)
  if not text_stream.aligned(config.model):
    return MemoryTurn(np.asarray(tokenizer.encode_turn(speaker, text)),
                      codes, audio, sample_rate, text)
  tags = np.asarray(tokenizer.tag_rows(speaker, emotion,
                                      text_stream.emotion_tag(config.model)))
  return MemoryTurn(tags, codes, audio, sample_rate, text,
                    tokens=np.asarray(tokenizer.encode(text), np.int32))


def turn_features(audio, sample_rate: int, text: str) -> np.ndarray:
  """The memory's (F,) prosody features of one turn's audio."""
  from csm_jax.data import features  # pylint: disable=g-import-not-at-top
  return memory_rows.memory_features(features.prosody(audio, sample_rate,
                                                      text))


class MemoryWriter:
  """The memory of a model (``config.model.memory``) turn by turn."""

  def __init__(self, config, graphdef, params, features: bool | None = None):
    if not memory_config.enabled(config.model):
      raise MemoryStateError("the model has no memory (model.memory."
                             "enabled is False)")
    mem = config.model.memory
    self.n = config.model.n_codebooks
    self.rows = int(mem.turn_rows)
    # The aligned text stream's lookahead: its memory rows' text shape.
    self.ahead = (text_stream.lookahead(config.model)
                  if text_stream.aligned(config.model) else None)
    self.features = bool(mem.prosody_features if features is None
                         else features)
    self.graphdef, self.params = graphdef, params
    self.memory = nnx.merge(graphdef, params).memory
    self.signature = memory_config.signature(config.model)

    def update(p, state, turn):
      return memory_lib.update(nnx.merge(graphdef, p), state, turn)

    self._update = jax.jit(update)
    self._prefix = jax.jit(
        lambda p, s: nnx.merge(graphdef, p).memory.prefix(s))

  @property
  def n_prefix(self) -> int:
    return self.memory.n_prefix

  def init(self, batch: int = 1) -> MemoryState:
    return self.memory.init_state(batch)

  def check(self, state: MemoryState, batch: int | None = None) -> None:
    self.memory.check_state(state, batch)

  def _arrays(self, turns: Sequence[MemoryTurn | None]) -> dict:
    b = len(turns)
    text_shape = (b, self.rows) + (() if self.ahead is None
                                   else (1 + self.ahead,))
    out = {"audio_tokens": np.zeros((b, self.rows, self.n), np.int32),
           "text_tokens": np.zeros(text_shape, np.int32),
           "mask": np.zeros((b, self.rows, self.n + 1), bool),
           "valid": np.zeros((b,), bool),
           "features": np.zeros((b, memory_config.PROSODY_FEATURES),
                                np.float32),
           "features_present": np.zeros((b,), bool)}
    for i, t in enumerate(turns):
      if t is None:
        continue
      codes = np.asarray(t.codes, np.int32)[:, :self.n]
      stream = None if t.tokens is None else (t.tokens, None)
      if self.ahead is not None and stream is None:
        raise MemoryStateError("a turn written on the aligned text stream "
                               "needs its text tokens (inference.memory."
                               "memory_turn)")
      r = memory_rows.memory_turn_rows(
          Turn(np.asarray(t.text_ids, np.int32), codes, stream=stream),
          self.n, self.rows, self.ahead)
      out["audio_tokens"][i], out["text_tokens"][i] = (r["audio_tokens"],
                                                       r["text_tokens"])
      out["mask"][i], out["valid"][i] = r["mask"], True
      if self.features and t.audio is not None and len(t.audio):
        out["features"][i] = turn_features(t.audio, t.sample_rate, t.text)
        out["features_present"][i] = True
    return {k: jnp.asarray(v) for k, v in out.items()}

  def write(self, state: MemoryState,
            turns: Sequence[MemoryTurn | None]) -> MemoryState:
    """``state`` after one more turn per batch element (None: none)."""
    self.check(state, len(turns))
    new = self._update(self.params, state, self._arrays(turns))
    if not (np.all(np.isfinite(np.asarray(new.semantic)))
            and np.all(np.isfinite(np.asarray(new.prosodic)))):
      raise MemoryStateError("the memory became non-finite writing turn "
                             f"{int(np.max(np.asarray(state.turns))) + 1}")
    return new

  def of_turns(self, conversations: Sequence[Sequence[MemoryTurn]]
               ) -> MemoryState:
    """The memory after each conversation's turns (a batch of them)."""
    state = self.init(len(conversations))
    longest = max((len(c) for c in conversations), default=0)
    for j in range(longest):
      state = self.write(state, [c[j] if j < len(c) else None
                                 for c in conversations])
    return state

  def prefix(self, state: MemoryState) -> jax.Array:
    """(B, P, W) prefix vectors of a state (for a prefill)."""
    self.check(state)
    return self._prefix(self.params, state)


def stack_states(states: Sequence[MemoryState]) -> MemoryState:
  """One batched state from states of one conversation each."""
  sig = {s.signature for s in states}
  if len(sig) != 1:
    raise MemoryStateError(f"memory states of different configs: {sorted(sig)}")
  cat = lambda name: jnp.concatenate([getattr(s, name) for s in states])
  return MemoryState(cat("semantic"), cat("prosodic"), cat("turns"),
                     states[0].signature)
