"""The teacher-forced ceiling: the model's argmax codes given the true past.

Each prompt's target turn is laid out with its true frames after its
context, exactly as in training, and run through the model once: every
frame's codebook 0 is the argmax of the state before it, and every deeper
codebook the argmax of the depth decoder fed the true codes below it.
Decoded by the codec, this is what the model knows frame by frame when
nothing it generated can lead it astray: next to free-running generation
it says whether the loss is in per-frame prediction (both low) or in
generation drifting, skipping or stalling (this high, generation low).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.config import text_stream
from csm_jax.data.examples.frames import Turn, conversation_rows
from csm_jax.inference import aligned

_BUCKET = 64


def _bucketed(n: int) -> int:
  """``n`` rounded up to a multiple of ``_BUCKET`` (few compiled shapes)."""
  return -(-n // _BUCKET) * _BUCKET


def _turn(gen, t, codes, trained: bool) -> Turn:
  tok = gen.tokenizer
  if not text_stream.aligned(gen.config.model):
    return Turn(np.asarray(tok.encode_turn(t.speaker, t.text)), codes,
                trained)
  return Turn(aligned.tag_rows(gen, t.speaker, t.emotion or None),
              codes, trained,
              stream=aligned.context_stream(tok, t, len(codes),
                                            gen.frame_seconds))


def _rows(gen, prompt):
  """Training rows of the prompt (context, then the target with its
  frames), newest context kept to fit; and where the target's frames are."""
  n = gen.n
  m = gen.config.model
  lead = text_stream.lead(m) if text_stream.aligned(m) else None
  target_codes = np.asarray(gen.codec.encode(prompt.target.audio))[:, :n]
  target = _turn(gen, prompt.target, target_codes, True)
  context = [_turn(gen, t, np.asarray(gen.codec.encode(t.audio))[:, :n],
                   False) for t in prompt.context]
  while True:
    rows = conversation_rows(context + [target], n, lead=lead,
                             ahead=text_stream.lookahead(m))
    if len(rows["positions"]) <= gen.max_len or not context:
      break
    context.pop(0)
  keep = gen.max_len
  rows = {k: v[:keep] for k, v in rows.items()}
  frames = np.flatnonzero(rows["loss_mask"])
  # The end-of-speech frame is not speech: leave it out of the audio.
  return rows, frames[:len(target_codes)]


def _forward(graphdef, params, rows):
  model = nnx.merge(graphdef, params)
  h = model.backbone_hidden(rows["audio_tokens"], rows["text_tokens"],
                            rows["mask"], rows["positions"],
                            rows["segment_ids"])
  return h


def ceiling_codes(gen, prompts) -> list[np.ndarray]:
  """(frames, N) argmax codes of each prompt's target under teacher forcing."""
  forward = jax.jit(_forward, static_argnums=0)
  size = gen.codec.codebook_size if gen.codec else gen.config.model.codebook_size

  @jax.jit
  def heads(params, h, codes):
    model = nnx.merge(gen.graphdef, params)
    c0 = jnp.argmax(model.codebook0_head(h)[:, :size], axis=-1)
    deeper = jnp.argmax(model.decoder_logits(h, codes)[..., :size], axis=-1)
    return jnp.concatenate([c0[:, None], deeper], axis=1).astype(jnp.int32)

  out = []
  for p in prompts:
    rows, frames = _rows(gen, p)
    t = len(rows["positions"])
    pad = _bucketed(t) - t
    batch = {k: jnp.asarray(np.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1))
                            [None]) for k, v in rows.items()
             if k in ("audio_tokens", "text_tokens", "mask", "positions",
                      "segment_ids")}
    h = forward(gen.graphdef, gen.params, batch)[0]
    # Row r's state predicts row r + 1's frame. The frames are padded to
    # the bucket too (heads are per frame, so the padding changes none that
    # is kept), or the heads would compile once per target length.
    n = len(frames)
    if not n:
      out.append(np.zeros((0, gen.n), np.int32))
      continue
    at = np.pad(frames - 1, (0, _bucketed(n) - n), mode="edge")
    truth = jnp.asarray(rows["audio_tokens"][at + 1])
    out.append(np.asarray(heads(gen.params, h[at], truth))[:n])
  return out


def ceiling_audio(gen, prompts) -> list[np.ndarray]:
  """The teacher-forced codes decoded, trimmed to each target's length."""
  audio = []
  for p, codes in zip(prompts, ceiling_codes(gen, prompts)):
    y = gen.codec.decode(codes) if len(codes) else np.zeros((0,), np.float32)
    audio.append(np.clip(y[:len(p.target.audio)], -1, 1).astype(np.float32))
  return audio
