"""Generation with the memory: the prefix is the context's memory, decoding
sees what training saw, and a ``Conversation`` carries the memory."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.audio.io import write_wav
from csm_jax.inference import conversation as conv_lib
from csm_jax.inference.cli import RequestError
from csm_jax.inference.generator import ContextTurn, Generator, Sampling
from csm_jax.model.memory import MemoryStateError
from tests.memory.helpers import build, memory_config

SR, HOP = 8000, 320  # 25 frames per second
# The tiny model holds 48 rows: contexts are trimmed, as they should be.
pytestmark = pytest.mark.filterwarnings(
    "ignore::csm_jax.data.examples.frames.ContextTrimmed")


class CharTokenizer:
  def encode_turn(self, speaker, text):
    return [4 + speaker] + [16 + (ord(ch) % 64) for ch in text]


class ToyCodec:
  """Codes from the audio's level per frame; audio a tone per code."""

  sample_rate, frame_rate, levels = SR, SR / HOP, 4

  def encode(self, audio):
    frames = -(-len(audio) // HOP)
    x = np.pad(np.asarray(audio, np.float32), (0, frames * HOP - len(audio)))
    level = np.abs(x.reshape(frames, HOP)).mean(1)
    c0 = 1 + (np.round(level * 300).astype(np.int64) % 30)
    return np.stack([c0 + i for i in range(self.levels)], 1) % 31 + 1

  def decode(self, codes):
    t = np.arange(len(codes) * HOP) / SR
    f = np.repeat(100.0 + 10 * np.asarray(codes)[:, 0], HOP)
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)

  def streaming_decoder(self):
    return self

  def push(self, codes):
    return self.decode(codes)


def _gen(enabled=True):
  c = memory_config(enabled=enabled)
  c.data.context_turns = 2
  model = build(c)
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, CharTokenizer(), ToyCodec(),
                   weight_dtype=None), c, model


def _context(c, n=3):
  rng = np.random.default_rng(0)
  return [ContextTurn(i % 2, f"turn number {i}",
                      codes=rng.integers(1, c.model.codebook_size,
                                         (6 + i, c.model.n_codebooks)))
          for i in range(n)]


def test_decoding_with_the_memory_prefix_sees_what_training_sees():
  gen, c, model = _gen()
  ctx = _context(c)
  rows = gen.prompt_rows("and now a reply", 1, ctx, reserve=8)
  batch = gen._batch([rows], 8)
  prefix = gen._memory_prefix([("and now a reply", 1, ctx)])
  assert prefix.shape == (1, gen.prefix_slots, c.model.backbone.width)
  state = gen._prefill(gen.params, batch, prefix)
  assert int(state["length"]) == gen.prefix_slots + batch["positions"].shape[1]
  # The training forward over the same rows with the same prefix.
  h = model.backbone_hidden(batch["audio_tokens"], batch["text_tokens"],
                            batch["mask"], batch["positions"],
                            batch["segment_ids"], prefix=prefix)
  np.testing.assert_allclose(state["h"], h[:, -1], rtol=2e-4, atol=2e-5)
  # The memory matters: an empty one gives another state.
  empty = gen.memory.prefix(gen.memory.init(1))
  other = gen._prefill(gen.params, batch, empty)
  assert not np.allclose(other["h"], state["h"], atol=1e-4)


def test_a_given_memory_replaces_the_contexts():
  gen, c, _ = _gen()
  ctx = _context(c)
  s = Sampling(max_seconds=0.08 * 4, frames_per_call=2, seed=3)
  from_ctx = gen.generate("reply", 1, ctx, s)["codes"]
  mem = gen.memory.of_turns([[gen.memory_turn(t) for t in ctx]])
  given = [c0[0].codes for c0 in gen.stream_batch([("reply", 1, ctx, mem)],
                                                  s) if c0[0] is not None]
  np.testing.assert_array_equal(np.concatenate(given), from_ctx)
  foreign = _gen()[0].memory.init(2)  # a batch of two: wrong shape
  with pytest.raises(MemoryStateError):
    next(gen.stream_batch([("reply", 1, ctx, foreign)], s))


def test_memory_off_generates_as_before():
  gen, c, _ = _gen(enabled=False)
  assert gen.memory is None and gen.prefix_slots == 0
  out = gen.generate("reply", 1, _context(c), Sampling(max_seconds=0.16))
  assert len(out["codes"]) > 0


def test_a_conversation_writes_every_turn_once_at_a_constant_cost():
  gen, c, _ = _gen()
  conv = conv_lib.Conversation(gen, Sampling(max_seconds=0.08 * 3,
                                             frames_per_call=3,
                                             min_seconds=0.08))
  tone = ToyCodec().decode(np.full((8, 4), 5))
  conv.add_turn("hello there", 0, audio=tone)
  conv.add_turn("words only", 1)   # no audio: memory yes, prompt no
  assert int(conv.memory.turns[0]) == 2
  assert [t.text for t in conv.context()] == ["hello there"]
  for i in range(5):
    out = conv.reply(f"reply {i}", i % 2)
    assert out["memory_turns"] == 3 + i and len(out["codes"]) > 0
  assert len(conv.turns) == 7 and len(conv.context()) == 2
  assert gen.memory._update._cache_size() == 1  # one compiled update
  shapes = {k: np.asarray(v).shape for k, v in conv.memory_arrays().items()
            if k != "signature"}
  assert shapes["semantic"] == (1, c.model.memory.semantic.slots,
                                c.model.memory.dim)
  with pytest.raises(RequestError):
    conv.add_turn("  ", 0)


def test_a_conversation_script_is_played_turn_by_turn(tmp_path):
  gen, _, _ = _gen()
  write_wav(str(tmp_path / "a.wav"), ToyCodec().decode(np.full((6, 4), 3)),
            SR)
  script = tmp_path / "script.jsonl"
  script.write_text("\n".join(json.dumps(t) for t in [
      {"speaker": 0, "text": "are you coming", "audio": "a.wav"},
      {"speaker": 1, "text": "yes of course"},
      {"speaker": 0, "text": "great see you"}]) + "\n")
  s = Sampling(max_seconds=0.08 * 3, frames_per_call=3, min_seconds=0.08)
  out = conv_lib.run_script(gen, str(script), str(tmp_path / "out"), s)
  spoken = [t for t in out["turns"] if "out" in t]
  assert [t["memory_turns"] for t in spoken] == [2, 3]
  assert (tmp_path / "out" / "001_speaker1.wav").exists()
  summary = json.loads((tmp_path / "out" / "conversation.json").read_text())
  assert summary["prefix_cache"]["rows_reused"] > 0
  # The whole dialogue: the recorded turn, the two replies and three gaps.
  from csm_jax.audio.io import load_audio
  whole = load_audio(str(tmp_path / "out" / "dialogue.wav"), SR)
  expected = 6 * HOP + sum(int(round(t["seconds"] * SR)) for t in spoken)
  assert len(whole) == expected + 3 * int(conv_lib.DIALOGUE_GAP_S * SR)
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"speaker": -1, "text": "x"}\n')
  with pytest.raises(RequestError, match="line 1"):
    conv_lib.read_script(str(bad))
