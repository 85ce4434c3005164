"""The prosody stream on the aligned text stream: style, plan and column.

On the aligned stream (``inference.aligned``) the frame a row's state
predicts goes onto the next row, ``text_lead`` rows behind that row's text
token, and the row fed back carries the frame's prosody column (F0 id,
energy id, the turn's style) with its codes, as training lays it
(``data.examples.frames``). Rows before the lead carry no frame and no
column.

- The turn's style is given (``Control``: emotion and intensity, or a raw
  id) or sampled once by the style head from the state that predicts the
  turn's first frame, the state it is trained on (``with_first_style``).
- A sketch's frame f is followed on stream row f + lead (``Plan``); no
  end of speech is allowed before the sketch ends, and a plan of the
  model's own that ``pace`` resampled ends the utterance where it ends.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from csm_jax.inference import decode


# -- compiled pieces (inside ``aligned.generate_rows``) -----------------------
def with_first_style(model, state: dict, key, first, temperature) -> dict:
  """The state with its turn's style sampled where still unknown, on the
  row whose state predicts the turn's first frame (``first``)."""
  style = state["style"]
  unknown = style == model.prosody.unknown_style
  given = jnp.where(first & unknown, -1, style)
  return decode.choose_style(model, state, key, given, temperature)


def row_column(tokens, style, audio_on):
  """The frame's (F0 ids, energy ids) (B,), zero before the lead, and the
  prosody column (``CSM.embed_frames``) of the row that carries them."""
  f0, energy = (jnp.where(audio_on, t, 0) for t in tokens)
  b = f0.shape[0]
  column = (f0[:, None], energy[:, None], style[:, None],
            jnp.broadcast_to(audio_on, (b, 1)))
  return (f0, energy), column


# -- the host side ------------------------------------------------------------
def no_column(layout, n: int) -> dict:
  """The prosody fields of ``n`` rows without a frame (``frames``)."""
  return {"prosody_f0": np.zeros((n,), np.int32),
          "prosody_energy": np.zeros((n,), np.int32),
          "prosody_style": np.full((n,), layout.unknown_style, np.int32),
          "prosody_mask": np.zeros((n,), bool)}


@dataclasses.dataclass
class Plan:
  """What stage 1 follows per stream row, and where speech may end."""

  rows: dict            # (rows, B) arrays of ``decode.plan_frame``'s plan
  no_end: np.ndarray    # (B,) frames no end of speech comes before
  stop: list            # per request: the frame the utterance ends at, or None
  temperature: jax.Array

  def chunk(self, made: int, n: int) -> dict:
    return {k: jnp.asarray(v[made:made + n]) for k, v in self.rows.items()}


def start(gen, state: dict, styles, sketches, stop_at, s, lead: int,
          n_rows: int) -> tuple[dict, Plan]:
  """The state with each request's given style (-1 or None: the model's),
  and the ``Plan`` of ``n_rows`` stream rows."""
  b = state["h"].shape[0]
  given = np.full((b,), -1) if styles is None else np.asarray(styles)
  style = np.where(given >= 0, given, gen.bins.unknown_style)
  state = {**state, "style": jax.device_put(
      jnp.asarray(style, jnp.int32), state["h"].sharding)}
  sketches = list(sketches or [None] * b)
  frames = gen._plan_arrays(sketches, n_rows, b)  # pylint: disable=protected-access
  # Stream row r (from 1) holds frame r - lead: row r's step is index r - 1.
  rows = {k: np.concatenate([np.zeros((lead - 1, b), v.dtype), v])
          for k, v in frames.items()}
  no_end = np.asarray([0 if sk is None else len(sk) for sk in sketches])
  stop = [len(sk) if stop_at and stop_at[j] and sk is not None else None
          for j, sk in enumerate(sketches)]
  temp = jnp.float32(s.temperature if s.prosody_temperature is None
                     else s.prosody_temperature)
  return state, Plan(rows, no_end, stop, temp)


def style_of(gen, state: dict, j: int) -> int | None:
  """Request j's style id, None while the model has not chosen it."""
  style = int(np.asarray(state["style"])[j])
  return None if style == gen.bins.unknown_style else style
