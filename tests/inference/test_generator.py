"""Generator: context trimming, end-of-speech, silence guard, batching."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.data.examples.frames import ContextTrimmed
from csm_jax.inference.generator import ContextTurn, Generator, Sampling
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config


class CharTokenizer:
  """Byte-level ids for tests (the real tokenizer is sentencepiece)."""

  def encode_turn(self, speaker, text):
    return [4 + speaker] + [16 + (ord(ch) % 64) for ch in text]


def _generator(codec=None, zero_heads=False):
  c = tiny_config()
  model = CSM(c.model, nnx.Rngs(params=0))
  if zero_heads:
    model.codebook0_head.kernel[...] = jnp.zeros_like(model.codebook0_head.kernel[...])
    model.audio_head[...] = jnp.zeros_like(model.audio_head[...])
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, CharTokenizer(), codec), c


def _codes(c, frames):
  return np.random.default_rng(0).integers(1, c.model.codebook_size,
                                           (frames, c.model.n_codebooks))


def test_generates_frames_within_bounds_and_is_seeded():
  gen, c = _generator()
  s = Sampling(max_seconds=0.08 * 6, frames_per_call=2, top_k=5, seed=1)
  a = gen.generate("hello there", 1, [ContextTurn(0, "hi", codes=_codes(c, 4))], s)
  b = gen.generate("hello there", 1, [ContextTurn(0, "hi", codes=_codes(c, 4))], s)
  assert 0 < len(a["codes"]) <= 6
  assert a["codes"].max() < c.model.audio_vocab
  np.testing.assert_array_equal(a["codes"], b["codes"])


def test_end_of_speech_frame_stops_generation():
  gen, _ = _generator(zero_heads=True)
  # Zero heads + greedy: every code is 0, i.e. the end-of-speech frame.
  out = gen.generate("bye", 0, [], Sampling(temperature=0.0, max_seconds=2.0))
  assert len(out["codes"]) == 0


def test_over_long_context_is_trimmed_with_a_warning():
  gen, c = _generator()
  context = [ContextTurn(i % 2, "word " * 5, codes=_codes(c, 30))
             for i in range(6)]
  with pytest.warns(ContextTrimmed):
    out = gen.generate("reply", 0, context, Sampling(max_seconds=0.16))
  assert len(out["codes"]) <= 2


def test_batch_of_prompts_equals_each_prompt_alone():
  gen, c = _generator()
  reqs = [("short", 0, []), ("a longer prompt here", 1,
                             [ContextTurn(0, "x", codes=_codes(c, 3))])]
  s = Sampling(max_seconds=0.08 * 6, frames_per_call=3, top_k=8, seed=4)
  together = [[], []]
  for chunk in gen.stream_batch(reqs, s):
    for i, part in enumerate(chunk):
      if part is not None:
        together[i].append(part.codes)
  for i, (text, speaker, ctx) in enumerate(reqs):
    alone = gen.generate(text, speaker, ctx, s)["codes"]
    assert len(alone) > 0
    np.testing.assert_array_equal(np.concatenate(together[i]), alone)


def test_prompt_stays_within_the_trained_length():
  """Positions past data.seq_len were never trained on: the prompt is
  trimmed to fit there even when max_seq_len is larger."""
  gen, c = _generator()
  assert c.data.seq_len < c.model.max_seq_len
  assert gen.max_len == c.data.seq_len
  context = [ContextTurn(i % 2, "word " * 3, codes=_codes(c, 6))
             for i in range(6)]
  rows = gen.prompt_rows("reply", 0, context, reserve=4)
  assert len(rows["positions"]) + 4 <= c.data.seq_len


def test_a_windowed_model_speaks_past_its_trained_length():
  """Every row of the tiny model attends within 32 rows of the 48 it
  trained on: the cache holds twice that, so a response may outrun it."""
  gen, c = _generator()
  assert max(c.model.text_window, c.model.audio_window) < gen.max_len
  assert gen.cache_len == 2 * gen.max_len
  frames = gen.max_len + 10
  s = Sampling(max_seconds=0.08 * frames, min_seconds=0.08 * frames,
               frames_per_call=4, top_k=5, seed=2)
  context = [ContextTurn(0, "hi", codes=_codes(c, 6))]
  out = gen.generate("a long reply", 1, context, s)
  assert len(out["codes"]) == frames
  # The same request, the window's first frames: the extra room changes
  # nothing before the trained length.
  short = gen.generate("a long reply", 1, context, Sampling(
      max_seconds=0.08 * 12, min_seconds=0.08 * 12, frames_per_call=4,
      top_k=5, seed=2))
  np.testing.assert_array_equal(short["codes"], out["codes"][:12])


@pytest.mark.parametrize("window", ["full", "memory"])
def test_cache_keeps_the_trained_length_where_rows_see_the_start(window):
  """A row that attends to the start of the conversation (a window as long
  as the trained length, or a memory prefix every row sees) would meet
  distances training never showed: no extra room."""
  from csm_jax.inference.generator import cache_length
  c = tiny_config()
  if window == "full":
    c.model.text_window = c.model.audio_window = c.data.seq_len
    assert cache_length(c, c.data.seq_len, 0) == c.data.seq_len
  else:
    assert cache_length(c, c.data.seq_len, 0) == 2 * c.data.seq_len
    assert cache_length(c, c.data.seq_len, 4) == c.data.seq_len


def test_debug_config_generates_within_what_it_trained_on():
  import importlib.util, os
  root = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
  spec = importlib.util.spec_from_file_location(
      "debug_cfg", os.path.join(root, "configs", "debug.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  c = mod.get_config()
  assert c.model.max_seq_len == c.data.seq_len


class SilentCodec:
  """A codec whose decoder returns silence: exercises the silence guard."""

  levels, codebook_size, hop, sample_rate = 4, 32, 160, 4000
  frame_rate = 25.0

  def streaming_decoder(self):
    class Dec:
      def push(self, codes):
        return np.zeros((len(codes) * 160,), np.float32)
    return Dec()


def test_silence_guard_ends_a_silent_tail():
  gen, _ = _generator(codec=SilentCodec())
  s = Sampling(max_seconds=4.0, silence_seconds=0.2, frames_per_call=1)
  out = gen.generate("hm", 0, [], s)
  frames_for_silence = int(0.2 * SilentCodec.frame_rate)
  assert 0 < len(out["codes"]) <= frames_for_silence + 1
  assert len(out["codes"]) < 4.0 * SilentCodec.frame_rate


def test_min_seconds_holds_off_the_end_of_speech():
  gen, _ = _generator(zero_heads=True)
  # Zero heads + greedy would end at once (every code 0); with min_seconds
  # codebook 0 avoids code 0 for the first 3 frames, then the end comes.
  out = gen.generate("bye", 0, [], Sampling(
      temperature=0.0, max_seconds=2.0, min_seconds=0.24, frames_per_call=1))
  assert len(out["codes"]) == 3
  assert (out["codes"][:, 0] != 0).all()


class CountingCodec(SilentCodec):
  """Encodes a clip to codes that depend on its samples, counting calls."""

  def __init__(self):
    self.calls = 0

  def encode(self, audio):
    self.calls += 1
    a = np.asarray(audio, np.float32)
    frames = -(-len(a) // self.hop)
    return (np.arange(frames * self.levels).reshape(frames, self.levels)
            + int(a[0] * 10)) % self.codebook_size


def test_a_context_clip_is_encoded_once():
  codec = CountingCodec()
  gen, _ = _generator(codec=codec)
  clip = np.full((800,), 0.2, np.float32)
  first = gen._encode(ContextTurn(0, "hi", audio=clip))
  first[:] = -1   # the caller's copy: the kept codes stay as encoded
  again = gen._encode(ContextTurn(0, "hi", audio=clip.copy()))
  assert codec.calls == 1
  np.testing.assert_array_equal(again, codec.encode(clip)[:, :gen.n])
  other = gen._encode(ContextTurn(0, "hi", audio=clip * 2))
  assert codec.calls == 3   # another clip is encoded (and the check above)
  assert not np.array_equal(other, again)
