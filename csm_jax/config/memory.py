"""``model.memory``: the dual conversational memory (off by default).

With ``enabled`` every earlier turn of a conversation is written into two
banks of slots: the *semantic* bank reads the turn's text rows (what was
said), the *prosodic* bank its audio frames and, where the corpus has them,
its prosody features (how it was said). Slot ``i`` of a bank decays at its
own rate ``gamma_i``, spread geometrically in ``1 - gamma`` from
``decay_fast`` (slot 0) to ``decay_slow`` (the last slot), RetNet style;
with ``learned`` the decays start there and train. The banks enter the
backbone as prefix vectors every row of the current example attends to.
Off, the model is exactly the plain CSM. docs/memory.md has the equations,
the gradient flow and the conversational loss terms.
"""

from __future__ import annotations

import ml_collections

# Fields that change what a checkpoint holds or how a memory is computed;
# the training fields (history length, gradient depth, loss weights) do not.
STRUCTURAL = ("enabled", "dim", "prosody_features")
BANK_STRUCTURAL = ("slots", "decay_fast", "decay_slow", "learned")
BANKS = ("semantic", "prosodic")
# Per-turn prosody features the prosodic bank and the dynamics loss read
# (data.examples.memory_rows.memory_features turns the corpus's prosody
# fields into these).
PROSODY_FEATURES = 9


def _bank(slots: int, fast: float, slow: float) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      slots=slots, decay_fast=fast, decay_slow=slow, learned=False))


def memory_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      # Width of a slot; 0: the backbone's width.
      dim=0,
      # Content fades within a few turns; voice and style persist (the
      # research plan: memories that decay differently for content and
      # style).
      semantic=_bank(4, 0.5, 0.9),
      prosodic=_bank(4, 0.8, 0.98),
      # The prosodic bank also reads the turn's prosody features (F0,
      # level, rate) where the data has them.
      prosody_features=True,
      # Training layout: the earlier turns whose memory precedes each
      # example, and the rows each of them is cut to.
      turns=8,
      turn_rows=128,
      # The newest memory turns whose backbone pass receives gradient; the
      # older ones are read without (docs/memory.md). 0: none.
      grad_turns=2,
      # Conversational loss terms (docs/memory.md); 0 turns a term off.
      semantic_weight=0.0,
      dynamics_weight=0.0,
      character_weight=0.0,
      character_temperature=0.1,
  ))


def enabled(model_config) -> bool:
  """Whether ``config.model`` has the memory on (older runs have no field)."""
  p = model_config.get("memory") if model_config is not None else None
  return bool(p is not None and p.get("enabled", False))


def slot_count(model_config) -> int:
  """Prefix vectors the memory puts before every example (0 when off)."""
  if not enabled(model_config):
    return 0
  mem = model_config.memory
  return int(mem.semantic.slots + mem.prosodic.slots)


def decays(bank) -> list[float]:
  """The configured decay of every slot of ``bank``, fastest first.

  A decay of 1 is no decay: the slot keeps the plain mean of every turn
  written (``MemoryBank.write``).
  """
  n = int(bank.slots)
  fast, slow = 1.0 - float(bank.decay_fast), 1.0 - float(bank.decay_slow)
  if n == 1 or fast == 0.0:
    return [float(bank.decay_fast)] * n
  return [1.0 - fast * (slow / fast) ** (i / (n - 1)) for i in range(n)]


def validate(c, check) -> None:
  """Checks ``model.memory`` with ``check(cond, field, message)``."""
  mem, m = c.model.memory, c.model
  check(mem.dim >= 0, "model.memory.dim", f"must be >= 0, got {mem.dim}")
  for name in BANKS:
    b = mem[name]
    where = f"model.memory.{name}"
    check(0 <= b.slots <= 64, f"{where}.slots",
          f"must be in [0, 64] (0: the bank is off), got {b.slots}")
    check(0.0 < b.decay_fast <= 1.0, f"{where}.decay_fast",
          f"a decay is in (0, 1] (1: no decay), got {b.decay_fast}")
    check(0.0 < b.decay_slow <= 1.0, f"{where}.decay_slow",
          f"a decay is in (0, 1] (1: no decay), got {b.decay_slow}")
    check(b.decay_fast <= b.decay_slow, f"{where}.decay_slow",
          f"{b.decay_slow} is faster than decay_fast {b.decay_fast}")
    check(b.decay_slow < 1.0 or b.decay_fast == 1.0, f"{where}.decay_fast",
          "a bank without decay has decay_fast = decay_slow = 1")
    check(not (b.learned and b.decay_slow >= 1.0), f"{where}.learned",
          "a learned decay is a sigmoid, below 1: no-decay slots are fixed")
    if b.slots == 1:
      check(b.decay_fast == b.decay_slow, f"{where}.decay_slow",
            "one slot has one decay: set decay_slow equal to decay_fast")
  check(mem.semantic.slots + mem.prosodic.slots >= 1,
        "model.memory.semantic.slots",
        "both banks are off (0 slots each); turn the memory off instead "
        "(model.memory.enabled=False)")
  check(mem.turns >= 1, "model.memory.turns", f"must be >= 1, got {mem.turns}")
  check(mem.turn_rows >= 4, "model.memory.turn_rows",
        f"must be >= 4, got {mem.turn_rows}")
  check(mem.turn_rows <= m.max_seq_len, "model.memory.turn_rows",
        f"{mem.turn_rows} exceeds model.max_seq_len {m.max_seq_len}")
  check(0 <= mem.grad_turns <= mem.turns, "model.memory.grad_turns",
        f"must be in [0, turns={mem.turns}], got {mem.grad_turns}")
  for key in ("semantic_weight", "dynamics_weight", "character_weight"):
    check(mem[key] >= 0, f"model.memory.{key}", f"must be >= 0, got {mem[key]}")
  check(mem.character_temperature > 0, "model.memory.character_temperature",
        f"must be positive, got {mem.character_temperature}")


def check_weights(c, check) -> None:
  """The loss terms read the memory's turns: they need it on."""
  mem = c.model.get("memory")
  if mem is None or enabled(c.model):
    return
  for key in ("semantic_weight", "dynamics_weight", "character_weight"):
    check(mem[key] == 0, f"model.memory.{key}",
          f"{mem[key]} needs the memory (model.memory.enabled=True)")


def structural_dict(mem) -> dict:
  out = {k: mem[k] for k in STRUCTURAL}
  for name in BANKS:
    out[name] = {k: mem[name][k] for k in BANK_STRUCTURAL}
  return out


def signature(model_config) -> str:
  """What a memory state depends on, as one string (states carry it)."""
  mem = model_config.memory
  parts = [f"w{model_config.backbone.width}", f"d{mem.dim}",
           f"pf{int(bool(mem.prosody_features))}"]
  for name in BANKS:
    b = mem[name]
    parts.append(f"{name[0]}{b.slots}:{b.decay_fast:g}-{b.decay_slow:g}"
                 f"{'L' if b.learned else ''}")
  return "/".join(parts)
