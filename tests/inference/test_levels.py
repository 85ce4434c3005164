"""Adaptive quality (--levels=k): partial frames fed back, the codec decoding
k levels, and the end of speech judged on the whole frame."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.codec.handle import CodecHandle
from csm_jax.codec.model import init_codec
from csm_jax.inference import decode
from csm_jax.inference.generator import Generator, Sampling
from csm_jax.model.csm import CSM
from csm_jax.model.loss import truncate_levels
from tests.codec.conftest import tiny_config as tiny_codec_config
from tests.foundation.tiny import tiny_config
from tests.inference.test_generator import CharTokenizer


def _setup(zero_c0=False, zero_all=False):
  c = tiny_config()
  model = CSM(c.model, nnx.Rngs(params=0))
  if zero_c0 or zero_all:
    model.codebook0_head.kernel[...] = jnp.zeros_like(
        model.codebook0_head.kernel[...])
  if zero_all:
    model.audio_head[...] = jnp.zeros_like(model.audio_head[...])
  cc = tiny_codec_config()
  cc.rvq.levels, cc.rvq.codebook_size = (c.model.n_codebooks,
                                         c.model.codebook_size)
  handle = CodecHandle(init_codec(cc))
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, CharTokenizer(), handle), handle


def test_frame_row_marks_only_the_generated_levels():
  codes = jnp.array([[3, 4, 0, 0]])
  _, _, mask = decode.frame_row(codes, n_levels=2)
  assert np.asarray(mask)[0, 0].tolist() == [True, True, False, False, False]
  _, _, full = decode.frame_row(codes)
  assert np.asarray(full)[0, 0, :4].all()


def test_k_levels_give_k_columns_and_whole_frames_of_audio():
  gen, handle = _setup()
  s = Sampling(max_seconds=6 / handle.frame_rate, frames_per_call=3,
               n_levels=2, seed=1, min_seconds=6 / handle.frame_rate)
  chunks = list(gen.stream("hello", 0, [], s))
  codes = np.concatenate([c.codes for c in chunks])
  audio = np.concatenate([c.audio for c in chunks])
  assert codes.shape == (6, 2)
  assert len(audio) == 6 * handle.hop
  # The codec decoded exactly the two levels that were generated.
  np.testing.assert_allclose(audio, handle.decode(codes), atol=1e-4)


def test_end_of_speech_only_on_a_real_end_of_speech_frame():
  # Codebook 0 always says 0 (greedy on zero logits) but the other levels
  # do not: at k=1 the old rule (all sampled codes 0) stopped at frame 0.
  gen, handle = _setup(zero_c0=True)
  s = Sampling(temperature=0.0, max_seconds=5 / handle.frame_rate,
               frames_per_call=1, n_levels=1)
  out = gen.generate("hello", 0, [], s)
  assert len(out["codes"]) == 5 and not out["eos"]
  # Every level 0: a real end of speech, at any k.
  gen, handle = _setup(zero_all=True)
  out = gen.generate("hello", 0, [], s)
  assert len(out["codes"]) == 0 and out["eos"]


def test_level_dropout_truncates_input_frames_to_prefixes():
  mask = np.zeros((64, 10, 5), bool)
  mask[:, :3, -1] = True        # text rows
  mask[:, 3:, :4] = True        # audio rows, 4 levels
  out = np.asarray(truncate_levels(jnp.asarray(mask), jax.random.key(0), 1.0))
  levels = out[:, 3:, :4].sum(-1)
  assert (levels == levels[:, :1]).all()            # one k per example
  assert levels.min() >= 1 and levels.max() <= 4
  assert len(np.unique(levels[:, 0])) > 1
  assert (out[:, :3] == mask[:, :3]).all()          # text rows untouched
  # Every kept level set is a prefix.
  assert (np.diff(out[:, 3:, :4].astype(int), axis=-1) <= 0).all()
  same = np.asarray(truncate_levels(jnp.asarray(mask), jax.random.key(0),
                                    0.0))
  assert (same == mask).all()
