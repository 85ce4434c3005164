"""The dual memory on the aligned text stream: its turn rows, the same in
training and at generation, a short run that trains, and a conversation
that carries the memory turn by turn."""

import jax
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import schema
from csm_jax.data.batch import csm_batch_spec, validate_batch
from csm_jax.data.examples import memory_rows
from csm_jax.data.examples.frames import END_OF_TEXT, Turn
from csm_jax.inference.conversation import Conversation
from csm_jax.inference.generator import ContextTurn, Generator, Sampling
from csm_jax.model import memory as memory_lib
from csm_jax.model.csm import CSM
from csm_jax.training.tasks.csm import CSMTask
from csm_jax.training.trainer import Trainer
from tests.memory.aligned_helpers import (N_CODEBOOKS, TEXTS, TOK,
                                          aligned_memory_config, memory_source,
                                          records)
from tests.memory.helpers import turn_window
from tests.memory.test_memory_generation import ToyCodec

pytestmark = pytest.mark.filterwarnings(
    "ignore::csm_jax.data.examples.frames.ContextTrimmed")


def _generator(c, seed=0):
  model = CSM(c.model, nnx.Rngs(params=seed))
  graphdef, params = nnx.split(model)
  return Generator(c, graphdef, params, TOK, ToyCodec(), weight_dtype=None)


def test_an_aligned_memory_turn_reads_its_whole_text_before_its_frames():
  tags = np.asarray([TOK.bos_id, TOK.speaker_token_id(1)])
  tokens = np.asarray(TOK.encode("It is at eight."), np.int32)
  codes = np.arange(1, 13 * N_CODEBOOKS + 1).reshape(13, N_CODEBOOKS) % 30 + 1
  turn = Turn(tags, codes, stream=(tokens, None))
  r = memory_rows.aligned_memory_rows(turn, N_CODEBOOKS, ahead=2)
  ids = np.concatenate([tags, tokens, [END_OF_TEXT]])
  t = len(ids)
  # As many rows as the prefix stream's memory turn: text, frames, end.
  assert len(r["text_tokens"]) == t + 13 + 1
  np.testing.assert_array_equal(r["text_tokens"][:t, 0], ids)
  assert not r["text_tokens"][:2, 1:].any()   # tag rows: no lookahead
  ahead = np.concatenate([tokens, [END_OF_TEXT] * 3])
  for i in range(len(tokens)):   # each token and the two after it
    np.testing.assert_array_equal(r["text_tokens"][2 + i], ahead[i:i + 3])
  assert np.all(r["text_tokens"][t - 1:] == END_OF_TEXT)
  assert r["mask"][:, -1].all()   # every row shows text, as aligned rows
  assert not r["mask"][:t, :-1].any() and r["mask"][t:, :-1].all()
  np.testing.assert_array_equal(r["audio_tokens"][t:t + 13], codes)
  assert not r["audio_tokens"][-1].any()   # the end-of-speech frame
  # The semantic bank reads the text rows, the prosodic bank the frames.
  text_rows, audio_rows = memory_lib.row_kinds(r["mask"])
  assert np.asarray(text_rows).sum() == t
  assert np.asarray(audio_rows).sum() == 14
  # Cut to R rows: the whole text first, then the first frames.
  cut = memory_rows.memory_turn_rows(turn, N_CODEBOOKS, t + 4, ahead=2)
  assert cut["text_tokens"].shape == (t + 4, 3)
  np.testing.assert_array_equal(cut["audio_tokens"][t:], codes[:4])
  # A turn known by its words only: its text rows and the end of speech.
  words = Turn(tags, np.zeros((0, N_CODEBOOKS), np.int32),
               stream=(tokens, None))
  r = memory_rows.memory_turn_rows(words, N_CODEBOOKS, 40, ahead=2)
  assert r["mask"].any(-1).sum() == t + 1
  with pytest.raises(ValueError, match="text tokens"):
    memory_rows.aligned_memory_rows(Turn(tags, codes), N_CODEBOOKS, 2)


def test_training_rows_are_what_generation_writes_for_the_same_turns():
  c = aligned_memory_config()
  schema.validate(c)
  src = memory_source(c, short=3)
  # Turn 3 could not be aligned: no example, but the memory holds it.
  assert src.base.unaligned == 2
  index = [t[0] for t in src.targets].index(5)
  row = src[index]
  assert row["memory_valid"].all()
  batch = {k: v[None] for k, v in row.items()}
  validate_batch(batch, {**csm_batch_spec(c),
                         **memory_rows.memory_batch_spec(c)}, 1)
  gen = _generator(c)
  recs, codes = records(short=3)
  turns = [ContextTurn(recs[p]["speaker_id"], recs[p]["text"],
                       codes=codes[p][:, :N_CODEBOOKS]) for p in range(5)]
  written = gen.memory._arrays([gen.memory_turn(t) for t in turns])
  for j in range(5):
    for field in ("audio_tokens", "text_tokens", "mask"):
      np.testing.assert_array_equal(row[f"memory_{field}"][j],
                                    written[field][j], err_msg=field)
  # The memory training computes over its window is the one generation
  # writes turn by turn (prosody features aside: audio gives them there).
  model = nnx.merge(gen.graphdef, gen.params)
  window = turn_window({k: jax.numpy.asarray(v) for k, v in batch.items()})
  window["features_present"] = window["features_present"] & False
  trained, _ = memory_lib.memory_from_turns(model, window, grad_turns=2)
  spoken = gen.memory.of_turns([[gen.memory_turn(t) for t in turns]])
  assert int(spoken.turns[0]) == int(trained.turns[0]) == 5
  np.testing.assert_allclose(spoken.semantic, trained.semantic, rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(spoken.prosodic, trained.prosodic, rtol=1e-4,
                             atol=1e-5)


class _InMemoryTask(CSMTask):
  """The CSM task reading ``aligned_helpers.memory_source``."""

  def _source(self, split):
    if split not in self._sources:
      self._sources[split] = memory_source(self.config, short=3)
    return self._sources[split]


def test_a_short_aligned_run_with_memory_trains(tmp_path):
  c = aligned_memory_config(weights=0.2)
  c.train.steps = 6
  tr = Trainer(c, str(tmp_path), _InMemoryTask(c))
  tr.compile()
  state = tr.builder.init(0, tr.mesh)
  it = iter(tr.task.train_dataset(c.data.batch_size, 0))
  losses = []
  for _ in range(6):
    state, m = tr.train_step(state, tr._put(next(it)))
    m = jax.device_get(m)
    for key in ("loss/semantic", "loss/dynamics", "loss/character",
                "loss/advance", "memory/semantic_norm",
                "memory/prosodic_norm"):
      assert np.isfinite(float(m[key])), key
    assert int(m["nonfinite/this_step"]) == 0
    assert float(m["memory/turns"]) > 0
    losses.append(float(m["loss"]))
  assert np.mean(losses[-2:]) < losses[0] - 0.5, losses


def test_an_aligned_conversation_carries_its_memory_turn_by_turn():
  c = aligned_memory_config()
  gen = _generator(c)
  s = Sampling(max_seconds=0.6, frames_per_call=4, min_seconds=0.08, top_k=8)
  conv = Conversation(gen, s)
  tone = ToyCodec().decode(np.full((20, N_CODEBOOKS), 5))
  conv.add_turn(TEXTS[0], 0, audio=tone)
  conv.add_turn(TEXTS[1], 1)   # words only: memory yes, prompt no
  assert int(conv.memory.turns[0]) == 2
  before = conv.memory
  for i in range(3):
    out = conv.reply(TEXTS[2 + i], i % 2)
    assert out["memory_turns"] == 3 + i and len(out["codes"]) > 0
    # The reply is written into the memory: the state moves every turn.
    assert not np.allclose(before.semantic, conv.memory.semantic)
    assert not np.allclose(before.prosodic, conv.memory.prosodic)
    before = conv.memory
  assert gen.memory._update._cache_size() == 1   # one compiled update
  # Aligned generation reads the memory: the same request with the
  # conversation's memory or an empty one says other frames.
  request = (TEXTS[5], 0, conv.context())
  said = [np.concatenate([ch[0].codes for ch in gen.stream_batch(
      [request + (state,)], s) if ch[0] is not None])
          for state in (conv.memory, gen.memory.init(1))]
  assert len(said[0]) and len(said[1])
  n = min(len(said[0]), len(said[1]))
  assert not np.array_equal(said[0][:n], said[1][:n])
  # Text streamed in, the memory written from the context: the frames of
  # the whole text.
  whole = gen.generate(TEXTS[5], 0, conv.context(), s)["codes"]
  pieces = iter([TEXTS[5][i:i + 4] for i in range(0, len(TEXTS[5]), 4)])
  streamed = np.concatenate([ch.codes for ch in gen.stream_text(
      pieces, 0, conv.context(), s)])
  assert len(whole)
  np.testing.assert_array_equal(streamed, whole)
