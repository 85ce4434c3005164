"""Generation on the aligned text stream: advancing through the text, its
end, streaming text in, and the prefix stream left as it was."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer, PhonemizeError
from csm_jax.inference import aligned
from csm_jax.inference.generator import ContextTurn, Generator, Sampling
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config

TOK = PhonemeTokenizer()
TEXT = "Well, the engine folds the shiny shard."


class FixedAdvance(nnx.Module):
  """An advance head that always (bias > 0) or never (< 0) moves on."""

  def __init__(self, bias: float):
    self.bias = nnx.Param(jnp.asarray([0.0, bias]))

  def __call__(self, h):
    return jnp.broadcast_to(self.bias[...], (*h.shape[:-1], 2))


def _generator(stream="aligned", advance_bias=None):
  c = tiny_config(model__text_vocab=512, model__text_stream=stream,
                  data__seq_len=128)
  model = CSM(c.model, nnx.Rngs(params=0))
  if advance_bias is not None:
    model.advance_head = FixedAdvance(advance_bias)
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, TOK, None), c


def _rows_fed(gen, text, n_rows, seed=0):
  """The text column of every row the generator appends, and the state."""
  feed = aligned.TextFeed(TOK, text)
  feed.pull(1 << 20)
  prompt = aligned.prompt_rows(gen, aligned.first_row(feed, 2), 1, (), 64)
  state = gen._prefill(gen.params, gen._batch([prompt], 64))
  state.update(ptr=jnp.zeros((1,), jnp.int32), row=jnp.zeros((), jnp.int32))
  tokens = jnp.asarray([feed.tokens + [0] * (64 - len(feed.tokens))])
  step = gen.aligned_step(n_rows, 0, 1.0)
  out = step(gen.params, state, jax.random.key(seed)[None],
             jnp.ones((gen.n,)), tokens, jnp.asarray([len(feed.tokens)]),
             jnp.float32(1.0), jnp.ones((n_rows,), bool))
  return feed.tokens, np.asarray(out[3])[:, 0], out


def test_the_advance_head_walks_the_text_in_order_and_stops_at_its_end():
  gen, _ = _generator(advance_bias=30.0)
  tokens, ptr, out = _rows_fed(gen, TEXT, 48)
  k = len(tokens)
  assert k < 48
  # One token further per row, then end of text for good.
  np.testing.assert_array_equal(ptr[:k], np.arange(1, k + 1))
  assert np.all(ptr[k:] == k)
  audio_on = np.asarray(out[2])
  assert not audio_on[0] and audio_on[1:].all()   # lead 2: row 1 has none
  # Generation ends once the text is spoken: at most lead + tail rows on.
  s = Sampling(max_seconds=8.0, frames_per_call=4, tail_seconds=0.0)
  res = gen.generate(TEXT, 1, (), s)
  assert res["eos"]
  assert k - 1 <= len(res["codes"]) <= k + 4


def test_a_model_that_never_moves_on_runs_to_the_cap():
  gen, _ = _generator(advance_bias=-30.0)
  _, ptr, _ = _rows_fed(gen, TEXT, 12)
  assert np.all(ptr == 0)
  res = gen.generate(TEXT, 1, (), Sampling(max_seconds=0.08 * 12,
                                          frames_per_call=4))
  assert not res["eos"] and len(res["codes"]) >= 10


@pytest.mark.parametrize("seed", [0, 3])
def test_streamed_text_gives_the_frames_of_the_whole_text(seed):
  gen, c = _generator()
  ctx = [ContextTurn(0, "Hello there.", codes=np.random.default_rng(0)
                     .integers(1, c.model.codebook_size, (9, 4)))]
  s = Sampling(max_seconds=3.0, frames_per_call=3, top_k=8, seed=seed)
  whole = gen.generate(TEXT, 1, ctx, s)["codes"]
  pieces = iter([TEXT[i:i + 5] for i in range(0, len(TEXT), 5)])
  streamed = np.concatenate([ch.codes for ch in gen.stream_text(
      pieces, 1, ctx, s)])
  assert len(whole) > 0
  np.testing.assert_array_equal(streamed, whole)


def test_text_arriving_after_the_end_stops_cleanly():
  gen, _ = _generator(advance_bias=30.0)
  s = Sampling(max_seconds=4.0, frames_per_call=4, tail_seconds=0.0)

  def slow():
    yield "Well, the"
    yield " engine."   # then the input ends: the turn must end too
  chunks = list(gen.stream_text(slow(), 1, (), s))
  assert chunks[-1].eos


def test_unspeakable_text_is_one_clear_error():
  gen, _ = _generator()
  with pytest.raises(PhonemizeError, match="cannot phonemize '\\?\\?\\?'"):
    gen.generate("???", 1, (), Sampling(max_seconds=0.4))
  with pytest.raises(PhonemizeError):
    list(gen.stream_text(iter(["!", "?"]), 1, (), Sampling(max_seconds=0.4)))


def test_a_prefix_model_refuses_streaming_text_in_one_line():
  gen, _ = _generator(stream="prefix")
  with pytest.raises(aligned.TextStreamError, match="prefix") as e:
    list(gen.stream_text(iter(["hello "]), 0, (), Sampling()))
  assert "\n" not in str(e.value)


def test_the_prefix_stream_is_the_model_it_was():
  """Off, the switch adds nothing: the same parameters as a config from
  before it, and the aligned model's other parameters equal them too."""
  prefix = tiny_config(model__text_vocab=512)
  legacy = tiny_config(model__text_vocab=512)
  legacy.model.unlock()
  for key in ("text_stream", "text_lead", "text_lookahead",
              "advance_loss_weight"):
    del legacy.model[key]
  on = tiny_config(model__text_vocab=512, model__text_stream="aligned")
  p_prefix = nnx.state(CSM(prefix.model, nnx.Rngs(params=0)), nnx.Param)
  p_legacy = nnx.state(CSM(legacy.model, nnx.Rngs(params=0)), nnx.Param)
  p_on = nnx.state(CSM(on.model, nnx.Rngs(params=0)), nnx.Param)
  flat = dict(nnx.to_flat_state(p_prefix))
  assert not any("advance_head" in k for k in flat)
  assert flat.keys() == dict(nnx.to_flat_state(p_legacy)).keys()
  for k, v in nnx.to_flat_state(p_legacy):
    np.testing.assert_array_equal(flat[k][...], v[...])
  on_flat = {k: v for k, v in nnx.to_flat_state(p_on)
             if "advance_head" not in k and "ahead_embed" not in k}
  assert on_flat.keys() == flat.keys()
  for k, v in on_flat.items():
    np.testing.assert_array_equal(flat[k][...], v[...])


def test_stdin_pieces_reads_a_pipe_as_it_comes():
  import os
  from csm_jax.inference.cli import stdin_pieces
  r, w = os.pipe()
  os.write(w, "Hello th".encode())
  os.write(w, "ere \u00e9".encode()[:-1])   # a character cut in two
  gen = stdin_pieces(r)
  first = next(gen)
  assert first.startswith("Hello th")
  os.write(w, "\u00e9".encode()[-1:])
  os.close(w)
  assert first + "".join(gen) == "Hello there \u00e9"


def test_no_end_of_speech_before_min_seconds():
  gen, _ = _generator(advance_bias=30.0)
  s = Sampling(max_seconds=6.0, min_seconds=4.0, frames_per_call=4,
               tail_seconds=0.0)
  res = gen.generate("Hi.", 1, (), s)
  assert len(res["codes"]) >= int(4.0 / gen.frame_seconds)


def test_fewer_levels_generate_only_those_codebooks():
  gen, _ = _generator()
  s = Sampling(max_seconds=1.0, frames_per_call=4, seed=2, n_levels=2)
  res = gen.generate(TEXT, 1, (), s)
  assert len(res["codes"]) > 0 and res["codes"].shape[1] == 2


def test_the_emotion_tag_reaches_the_prompt_and_changes_what_is_said():
  """A model with ``model.emotion_tag``: the request's emotion (a
  ``Control``, ``Sampling.emotion`` or ``--emotion``) is its turn's third
  tag row, context turns carry theirs, and an unknown name is one line."""
  from csm_jax.data.prosody_tokens import ProsodyError
  from csm_jax.data.tokenizer import TokenizerError
  from csm_jax.inference.generator import Control
  c = tiny_config(model__text_vocab=512, model__text_stream="aligned",
                  data__seq_len=128, model__emotion_tag=True)
  model = CSM(c.model, nnx.Rngs(params=0))
  graphdef, params = nnx.split(model)
  gen = Generator(c, graphdef, params, TOK, None)
  ctx = [ContextTurn(0, "Hi there.", codes=np.ones((5, gen.n), np.int32),
                     emotion="calm")]
  rows = aligned.prompt_rows(gen, np.asarray([50, 51, 52]), 1, ctx, 32,
                             emotion="sad")
  text = list(rows["text_tokens"][:, 0])
  calm, sad = TOK.emotion_token_id("calm"), TOK.emotion_token_id("sad")
  assert text[:3] == [TOK.bos_id, TOK.speaker_token_id(0), calm]
  assert text[-4:-1] == [TOK.bos_id, TOK.speaker_token_id(1), sad]

  def said(emotion):
    s = Sampling(max_seconds=0.5, seed=1, emotion=emotion)
    return np.concatenate([ch.codes for ch in gen.stream(TEXT, 1, (), s)])

  # The tag is read: the same seed says other codes under another emotion.
  assert not np.array_equal(said("sad"), said("anxious"))
  np.testing.assert_array_equal(said(None), said(None))
  with pytest.raises(TokenizerError, match="unknown emotion 'glum'"):
    said("glum")
  # Without the tag (and without the prosody stream) an emotion is refused.
  plain, _ = _generator()
  with pytest.raises(ProsodyError, match="emotion tag"):
    list(plain.stream(TEXT, 1, (), Sampling(max_seconds=0.5),
                      Control(emotion="sad")))
