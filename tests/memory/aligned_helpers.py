"""A tiny model with the dual memory on the aligned text stream, and a
small aligned dialogue corpus in memory, for the aligned memory tests."""

import numpy as np

from csm_jax.data.examples.dialogue import DialogueExamples, TokenCache
from csm_jax.data.examples.memory_dialogue import MemoryDialogueExamples
from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer
from csm_jax.data.text_alignment import AlignmentError, uniform_index
from tests.memory.helpers import memory_config

TOK = PhonemeTokenizer()
TEXTS = ("Are you coming tonight?", "It is at eight.", "I will be there.",
         "Bring the cake, please.", "Of course, and some wine.",
         "See you then.")
N_CODEBOOKS = 4


def aligned_memory_config(**memory):
  """The tiny memory CSM on the aligned text stream, phoneme tokens."""
  c = memory_config(**memory)
  c.model.text_vocab = 512   # every phoneme id (468) has a row
  c.model.text_stream = "aligned"
  c.model.memory.turn_rows = 40
  c.data.seq_len, c.data.tokenizer_type = 112, "phoneme"
  c.data.source = "dialogues"
  c.codec.rvq.codebook_size = c.model.codebook_size
  return c


class EvenAligner:
  """``text_alignment.Aligner`` with each turn's tokens spread evenly over
  its frames (no corpus timings), the real phoneme tokens."""

  lead, ahead, tokenizer = 2, 2, TOK

  def tag_rows(self, speaker):
    return [TOK.bos_id, TOK.speaker_token_id(speaker)]

  def stream(self, rec, text, n_frames):
    ids = np.asarray(TOK.encode(text), np.int32)
    try:
      return ids, uniform_index(len(ids), n_frames)
    except AlignmentError:
      return None


def records(conversations=2, frames=(36, 48), short=None):
  """Turns of ``conversations`` conversations of the six ``TEXTS``, two
  speakers alternating, with random codes; turn ``short`` of each is too
  short for its tokens (it cannot be aligned). Returns (records, codes)."""
  rng = np.random.default_rng(0)
  recs, codes = [], []
  for c in range(conversations):
    for i, text in enumerate(TEXTS):
      recs.append({"text": text, "speaker_id": (c + i) % 2,
                   "conversation_id": f"c{c}", "turn_index": i,
                   "prosody": rng.uniform(1, 3, 10).astype(np.float32),
                   "semantic": rng.normal(size=128).astype(np.float32)})
      n = 4 if i == short else int(rng.integers(*frames))
      codes.append(rng.integers(1, 31, (n, 8)).astype(np.int16))
  return recs, codes


def memory_source(config, short=None):
  """``MemoryDialogueExamples`` over ``records`` on the aligned stream."""
  recs, codes = records(short=short)
  d, mem = config.data, config.model.memory
  base = DialogueExamples(recs, TokenCache(codes), None, None, N_CODEBOOKS,
                          d.seq_len, context_turns=1, loss_on="all_audio",
                          aligner=EvenAligner())
  return MemoryDialogueExamples(base, recs, mem.turns, mem.turn_rows)
