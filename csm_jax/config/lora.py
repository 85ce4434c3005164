"""Which projections LoRA adapts: the names ``train.lora.targets`` resolves.

Every projection of the CSM's two transformer stacks has a name
``<stack>.<block>.<projection>``: stacks ``backbone`` and ``decoder``,
blocks ``attn`` (projections ``q``, ``k``, ``v``, ``o``) and ``mlp``
(``gate``, ``up``, ``down``). A target is one or more of those parts joined
by dots and selects every projection holding all of them: ``attn`` (all
attention projections), ``decoder.mlp``, ``q``, ``backbone.attn.v``.
``targets`` is a comma-separated list of targets.
"""

from __future__ import annotations

STACKS = ("backbone", "decoder")
BLOCKS = (("attn", ("q", "k", "v", "o")), ("mlp", ("gate", "up", "down")))
LAYERS = tuple(f"{s}.{b}.{p}" for s in STACKS for b, ps in BLOCKS for p in ps)


class LoraTargetError(ValueError):
  """A target selects no projection; the message lists the valid names."""


def resolve_targets(targets: str) -> tuple[str, ...]:
  """The projection names ``targets`` selects, in ``LAYERS`` order."""
  tokens = [t.strip() for t in str(targets).split(",") if t.strip()]
  if not tokens:
    raise LoraTargetError("names no projection; use e.g. 'attn,mlp'")
  chosen = set()
  for token in tokens:
    parts = set(token.split("."))
    hits = [name for name in LAYERS if parts <= set(name.split("."))]
    if not hits:
      raise LoraTargetError(
          f"{token!r} matches no layer; targets are parts of "
          f"<{'|'.join(STACKS)}>.<attn|mlp>.<q|k|v|o|gate|up|down>, e.g. "
          "'attn', 'mlp', 'decoder.attn', 'q'")
    chosen.update(hits)
  return tuple(name for name in LAYERS if name in chosen)


def stack_targets(targets: tuple[str, ...], stack: str) -> tuple[str, ...]:
  """``targets`` of one stack without its prefix (``attn.q``, ``mlp.up``)."""
  return tuple(t.split(".", 1)[1] for t in targets if t.startswith(stack + "."))
