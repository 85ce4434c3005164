"""The Llama-3 tokenizer adapter reproduces the reference's turn encoding."""

import pytest

from csm_jax.data.llama_tokenizer import LlamaTokenizer
from csm_jax.data.tokenizer import TokenizerError
from csm_jax.data.tokenizer_loader import load_tokenizer
from tests.interop import tokenizer_file


def test_turn_encoding_matches_the_reference(tokenizer_json):
  tok = load_tokenizer(tokenizer_json)
  assert isinstance(tok, LlamaTokenizer)
  assert tok.vocab_size == 128_256
  assert (tok.bos_id, tok.eos_id) == (128_000, 128_001)
  # The reference: its tokenizer with a begin/end template, on the text
  # "[{speaker}]{text}".
  ref = tokenizer_file.build(with_post_processor=True)
  for speaker, text in ((0, "Hello there, how are you doing today?"),
                        (1, " I am fine."), (12, "Speech, models!")):
    ids = tok.encode_turn(speaker, text)
    assert ids == ref.encode(f"[{speaker}]{text}").ids
    assert ids[0] == 128_000 and ids[-1] == 128_001
    assert tok.decode(ids) == f"[{speaker}]{text}"


def test_missing_special_tokens(tmp_path):
  path = tmp_path / "t.json"
  tokenizer_file.build(base_vocab=500, n_special=0).save(str(path))
  with pytest.raises(TokenizerError, match="has no <|begin_of_text|>"):
    LlamaTokenizer.load(str(path))
