"""Opening whichever text tokenizer a run, an export or a flag points at.

``load_tokenizer(path)``: a ``*.json`` file is a Llama-3 ``tokenizer.json``
(``data.llama_tokenizer``, converted CSM-1B), anything else a sentencepiece
model (``data.tokenizer``) or a phoneme tokenizer's JSON
(``data.phoneme_tokenizer``, sniffed by its first bytes). All have ``encode_turn``, ``vocab_size`` and
``decode``.
"""

from __future__ import annotations

import os

from csm_jax.data.llama_tokenizer import LlamaTokenizer
from csm_jax.data.phoneme_tokenizer import (PhonemeTokenizer,
                                            is_phoneme_tokenizer_file)
from csm_jax.data.tokenizer import TextTokenizer


def load_tokenizer(path: str):
  if os.fspath(path).endswith(".json"):
    return LlamaTokenizer.load(path)
  if is_phoneme_tokenizer_file(path):
    return PhonemeTokenizer.load(path)
  return TextTokenizer.load(path)
