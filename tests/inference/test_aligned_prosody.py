"""The prosody stream on the aligned text stream: config, loss, generation.

A tiny aligned two-stage model (untrained) with the tone codec of the
prosody tests: its style, sketches and pace are followed as on the prefix
stream, context turns carry the prosody of their audio, and text streamed
in gives the frames and the plan of the whole text.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import schema
from csm_jax.data.examples.frames import (ProsodyLayout, Turn,
                                         conversation_rows, pack)
from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer
from csm_jax.inference import aligned, aligned_prosody
from csm_jax.inference.generator import (Control, ContextTurn, Generator,
                                         Sampling)
from csm_jax.inference.prosody_control import Sketch
from csm_jax.model.csm import CSM
from csm_jax.model.loss import csm_loss
from tests.inference.test_aligned_generation import FixedAdvance
from tests.prosody import helpers as H

TOK = PhonemeTokenizer()
TEXT = "Well, the engine folds the shiny shard."


def _config():
  # Every phoneme id in range (an id past the table embeds as NaN).
  return H.prosody_config(model__text_vocab=512, model__text_stream="aligned",
                          data__seq_len=128)


@pytest.fixture(scope="module")
def bins():
  return H.fitted_bins(_config())


def _generator(bins, advance_bias=None):
  c = _config()
  model = CSM(c.model, nnx.Rngs(params=0))
  if advance_bias is not None:
    model.advance_head = FixedAdvance(advance_bias)
  return Generator(c, *nnx.split(model), TOK, H.ToneCodec(),
                   prosody_bins=bins)


def _context():
  codes = H.utterance_codes(np.random.default_rng(3), 12)
  return [ContextTurn(0, "Hello there.", codes=codes)]


def test_the_default_config_takes_the_prosody_stream():
  from configs import debug  # pylint: disable=import-outside-toplevel
  c = debug.get_config("model.prosody.enabled=True")
  assert c.model.text_stream == "aligned"
  schema.validate(c)


def test_the_prosody_losses_train_on_aligned_rows(bins):
  c = _config()
  model = CSM(c.model, nnx.Rngs(params=0))
  layout = ProsodyLayout(bins.unvoiced, bins.unknown_style)
  rng = np.random.default_rng(0)
  rows = []
  for i in range(2):
    f = 9
    turn = Turn(np.asarray([TOK.bos_id, TOK.speaker_token_id(1)]),
                rng.integers(1, 32, (f, 4)), True,
                prosody=(rng.integers(0, bins.unvoiced + 1, f),
                         rng.integers(0, bins.energy_bins, f)),
                style=i, stream=(np.asarray(TOK.encode("Hi.")),
                                 np.minimum(np.arange(f) // 3, 2)))
    rows.append(pack([conversation_rows([turn], 4, prosody=layout, lead=2,
                                        ahead=2)], 32))
  batch = {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}
  _, m = csm_loss(model, batch, jax.random.key(0), 0.5, 0.1)
  # One style target per turn: the row before its first frame (lead rows
  # after its first token); every frame trains the frame streams.
  assert float(m["frames/prosody_style"]) == 2
  for k in ("loss/prosody_f0", "loss/prosody_energy", "loss/prosody_voicing",
            "loss/prosody_style", "loss/advance"):
    assert np.isfinite(float(m[k])), k


def test_context_turns_carry_the_prosody_of_their_audio(bins):
  gen = _generator(bins)
  ctx = _context()
  prompt = aligned.prompt_rows(gen, np.asarray([40, 41, 42]), 1, ctx, 64)
  codes = ctx[0].codes
  f0, energy = gen._context_prosody(ctx[0], codes)
  audio = prompt["mask"][:, :-1].any(-1)
  np.testing.assert_array_equal(prompt["prosody_mask"], audio)
  at = np.flatnonzero(audio)[:len(codes)]
  np.testing.assert_array_equal(prompt["audio_tokens"][at], codes)
  np.testing.assert_array_equal(prompt["prosody_f0"][at], f0)
  np.testing.assert_array_equal(prompt["prosody_energy"][at], energy)
  assert set(prompt["prosody_style"]) == {bins.unknown_style}


def test_generation_feeds_the_rows_training_lays(bins):
  """The backbone state after generated rows equals the state of the same
  frames, tokens and style laid out as a training example."""
  gen = _generator(bins, advance_bias=-30.0)   # stays on the first token
  lead, n_rows = 2, 10
  feed = aligned.TextFeed(TOK, TEXT)
  feed.pull(1 << 20)
  prompt = aligned.prompt_rows(gen, aligned.first_row(feed, 2), 1, (), 64)
  state = gen._prefill(gen.params, gen._batch([prompt], 64))
  state.update(ptr=jnp.zeros((1,), jnp.int32), row=jnp.zeros((), jnp.int32))
  state, plan = aligned_prosody.start(gen, state, None, None, None,
                                      Sampling(), lead, n_rows)
  step = gen.aligned_step(n_rows, 0, 1.0)
  out = step(gen.params, state, jax.random.key(5)[None], jnp.ones((gen.n,)),
             jnp.asarray([feed.tokens]), jnp.asarray([len(feed.tokens)]),
             jnp.float32(1.0), jnp.ones((n_rows, 1), bool),
             plan.chunk(0, n_rows), plan.temperature)
  state = out[4]
  style = aligned_prosody.style_of(gen, state, 0)
  assert style is not None   # chosen by the model on the way
  # Frames of rows lead..n_rows, padded to one per stream row (cut below).
  frames = np.asarray(out[0])[lead - 1:, 0]
  f0, energy = (np.asarray(t)[lead - 1:, 0] for t in out[5])
  pad = lambda a: np.concatenate([a, a[:lead]])
  turn = Turn(np.asarray([TOK.bos_id, TOK.speaker_token_id(1)]),
              pad(frames), prosody=(pad(f0), pad(energy)), style=style,
              stream=(np.asarray(feed.tokens), np.zeros(n_rows + 1, int)))
  rows = conversation_rows([turn], gen.n, prosody=gen.layout, lead=lead,
                           ahead=2)
  rows = {k: jnp.asarray(v[:2 + n_rows + 1][None]) for k, v in rows.items()}
  model = nnx.merge(gen.graphdef, gen.params)
  h = model.backbone_hidden(
      rows["audio_tokens"], rows["text_tokens"], rows["mask"],
      rows["positions"], rows["segment_ids"],
      prosody=tuple(rows[k] for k in ("prosody_f0", "prosody_energy",
                                      "prosody_style", "prosody_mask")))
  np.testing.assert_allclose(np.asarray(state["h"][0]), np.asarray(h[0, -1]),
                             atol=1e-4, rtol=1e-4)


def test_the_asked_style_is_the_one_fed_and_changes_the_speech(bins):
  gen = _generator(bins)
  s = Sampling(max_seconds=1.2, frames_per_call=4, seed=1)
  free = gen.generate(TEXT, 1, _context(), s)
  assert 0 <= free["style"] < bins.unknown_style   # the model chose one
  assert free["prosody"].shape == (len(free["codes"]), 2)
  asked = {}
  for style in (0, 3):
    res = gen.generate(TEXT, 1, _context(), dataclasses.replace(s,
                                                                style=style))
    assert res["style"] == style
    asked[style] = res["codes"]
  assert not np.array_equal(asked[0], asked[3])
  lively = gen.generate(TEXT, 1, _context(), s,
                        Control(emotion="lively", intensity=0.9))
  assert lively["style"] == bins.style_id(bins.emotion_index("lively"), 1)
  np.testing.assert_array_equal(lively["codes"], asked[3])


def test_a_sketch_is_followed_to_its_end(bins):
  # The advance head runs through the text at once: without the sketch
  # the speech would end a few frames in.
  gen = _generator(bins, advance_bias=30.0)
  n = 20
  sketch = Sketch(bins.f0_ids_of_z(np.linspace(-1.5, 1.5, n)),
                  np.arange(n) % bins.energy_bins)
  s = Sampling(max_seconds=2.0, frames_per_call=4, tail_seconds=0.0, seed=0)
  short = gen.generate("Hi.", 1, (), s)
  res = gen.generate("Hi.", 1, (), s, Control(sketch=sketch))
  assert len(short["codes"]) < n <= len(res["codes"])
  np.testing.assert_array_equal(res["prosody"][:n, 0], sketch.f0)
  np.testing.assert_array_equal(res["prosody"][:n, 1], sketch.energy)


def test_pace_without_a_sketch_follows_the_models_own_plan_faster(bins):
  gen = _generator(bins)
  s = Sampling(temperature=0.0, max_seconds=0.04 * 8, frames_per_call=4,
               min_seconds=0.04 * 8 - 1e-3, tail_seconds=1.0)
  own = gen.generate(TEXT, 1, (), s)
  fast = gen.generate(TEXT, 1, (), dataclasses.replace(s, pace=2.0))
  assert len(own["codes"]) >= 8
  assert len(fast["codes"]) == len(own["codes"][::2])
  np.testing.assert_array_equal(fast["prosody"], own["prosody"][::2])
  with pytest.raises(aligned.TextStreamError, match="--pace"):
    list(gen.stream_text(iter([TEXT]), 1, (), dataclasses.replace(s,
                                                                  pace=2.0)))


@pytest.mark.parametrize("control", [None, Control(style=2)])
def test_streamed_text_gives_the_frames_and_plan_of_the_whole_text(
    bins, control):
  gen = _generator(bins)
  s = Sampling(max_seconds=2.0, frames_per_call=3, top_k=8, seed=4)
  whole = gen.generate(TEXT, 1, _context(), s, control)
  pieces = iter([TEXT[i:i + 5] for i in range(0, len(TEXT), 5)])
  chunks = list(gen.stream_text(pieces, 1, _context(), s, control))
  assert len(whole["codes"]) > 0
  np.testing.assert_array_equal(np.concatenate([c.codes for c in chunks]),
                                whole["codes"])
  np.testing.assert_array_equal(np.concatenate([c.prosody for c in chunks]),
                                whole["prosody"])
  assert {c.style for c in chunks} == {whole["style"]}
  if control is not None:
    assert whole["style"] == 2
