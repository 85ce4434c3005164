"""After the first chunk, generation compiles nothing (no end-of-speech stall).

A shorter last chunk (the end-of-speech frame or the length cap cuts the
chunk) used to compile a new codec decoder step at the very end of an
utterance. Compilations are counted with JAX's monitoring events.
"""

import jax
import numpy as np
from flax import nnx

from csm_jax.codec.handle import CodecHandle, pieces
from csm_jax.codec.model import init_codec
from csm_jax.inference.generator import Generator, Sampling
from csm_jax.model.csm import CSM
from tests.codec.conftest import tiny_config as tiny_codec_config
from tests.foundation.tiny import tiny_config
from tests.inference.test_generator import CharTokenizer

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# With the persistent compilation cache (tests/conftest.py) a repeated
# compilation is a cache hit instead: a stall all the same.
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def test_pieces_are_powers_of_two():
  assert pieces(13) == [8, 4, 1]
  assert pieces(8) == [8]
  assert sum(pieces(7)) == 7


def test_streaming_decode_in_pieces_equals_offline():
  cc = tiny_codec_config()
  handle = CodecHandle(init_codec(cc))
  codes = np.random.default_rng(0).integers(0, cc.rvq.codebook_size, (11, 3))
  dec = handle.streaming_decoder()
  streamed = np.concatenate([dec.push(codes[:7]), dec.push(codes[7:])])
  np.testing.assert_allclose(streamed, handle.decode(codes), atol=1e-4)


def test_no_compilation_after_the_first_chunk():
  c = tiny_config()
  cc = tiny_codec_config()
  cc.rvq.levels, cc.rvq.codebook_size = c.model.n_codebooks, c.model.codebook_size
  handle = CodecHandle(init_codec(cc))
  model = CSM(c.model, nnx.Rngs(params=0))
  graphdef, params = nnx.split(model)
  gen = Generator(c, graphdef, params, CharTokenizer(), handle)
  # 7 frames at 3 per call: the last chunk is cut to 1 frame.
  s = Sampling(max_seconds=7 / handle.frame_rate, frames_per_call=3, seed=2,
               min_seconds=7 / handle.frame_rate)
  counts = {"after_first": 0, "chunks": 0}

  def on_event(event, *args, **kwargs):
    del args, kwargs
    if event in (COMPILE_EVENT, CACHE_HIT_EVENT) and counts["chunks"] >= 1:
      counts["after_first"] += 1

  jax.monitoring.register_event_duration_secs_listener(on_event)
  jax.monitoring.register_event_listener(on_event)
  try:
    frames = 0
    for chunk in gen.stream("hello there", 1, [], s):
      counts["chunks"] += 1
      frames += len(chunk.codes)
  finally:
    jax.monitoring.unregister_event_duration_listener(on_event)
    jax.monitoring.unregister_event_listener(on_event)
  assert frames == 7 and counts["chunks"] == 3
  assert counts["after_first"] == 0, counts
