"""The Llama-3 text tokenizer of Sesame's CSM-1B, from a local ``tokenizer.json``.

A converted CSM-1B reads text as the reference does: a turn is
``"[{speaker}]{text}"`` encoded by the Llama-3 BPE tokenizer between
``<|begin_of_text|>`` (id 128000) and ``<|end_of_text|>`` (128001). The file
is read with the ``tokenizers`` package; nothing is downloaded (users fetch
``tokenizer.json`` themselves, see docs/interop.md). The interface is the
one generation and the data pipeline use from ``data.tokenizer``
(``encode_turn``, ``vocab_size``, ``decode``); the sentencepiece tokenizer
stays for our own corpora.
"""

from __future__ import annotations

import os
from typing import Sequence

from csm_jax.data.tokenizer import TokenizerError

BOS_TOKEN = "<|begin_of_text|>"
EOS_TOKEN = "<|end_of_text|>"
LLAMA3_VOCAB = 128_256  # 128,000 BPE pieces + 256 special tokens
LLAMA3_BOS_ID, LLAMA3_EOS_ID = 128_000, 128_001


class LlamaTokenizer:
  """A ``tokenizers`` BPE tokenizer plus CSM's turn format."""

  def __init__(self, tokenizer, path: str = "<memory>"):
    self._tok, self.path = tokenizer, path
    self.bos_id = tokenizer.token_to_id(BOS_TOKEN)
    self.eos_id = tokenizer.token_to_id(EOS_TOKEN)
    for name, tid in ((BOS_TOKEN, self.bos_id), (EOS_TOKEN, self.eos_id)):
      if tid is None:
        raise TokenizerError(f"{path}: has no {name} token; not a Llama-3 "
                             "tokenizer.json")

  @classmethod
  def load(cls, path: str) -> "LlamaTokenizer":
    path = os.fspath(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no tokenizer.json")
    try:
      from tokenizers import Tokenizer  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise TokenizerError(f"{path}: reading a tokenizer.json needs the "
                           "'tokenizers' package") from e
    try:
      tok = Tokenizer.from_file(path)
    except Exception as e:  # pylint: disable=broad-except
      raise TokenizerError(f"{path}: not a readable tokenizer.json "
                           f"({str(e)[:200]})") from e
    return cls(tok, path)

  @property
  def vocab_size(self) -> int:
    """Ids the tokenizer can emit, special tokens included."""
    return self._tok.get_vocab_size(with_added_tokens=True)

  def encode(self, text: str, add_bos: bool = False,
             add_eos: bool = False) -> list[int]:
    ids = list(self._tok.encode(text, add_special_tokens=False).ids)
    return (([self.bos_id] if add_bos else []) + ids
            + ([self.eos_id] if add_eos else []))

  def encode_turn(self, speaker_id: int, text: str, add_bos: bool = True,
                  add_eos: bool = True) -> list[int]:
    """Ids of ``"[{speaker_id}]{text}"`` between begin/end of text, exactly
    as the reference tokenizes a segment (the text is not stripped)."""
    return self.encode(f"[{int(speaker_id)}]{text}", add_bos, add_eos)

  def decode(self, ids: Sequence[int]) -> str:
    """Text of ``ids``; special tokens are dropped."""
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < self.vocab_size]
    if bad:
      raise TokenizerError(f"ids {bad[:5]} outside vocab of {self.vocab_size}")
    return self._tok.decode(ids, skip_special_tokens=True)
