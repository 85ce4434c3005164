"""A small tokenizer.json shaped like Llama-3's, made with ``tokenizers``.

A byte-level BPE trained on a few sentences, its vocabulary padded to
Llama-3's 128,000 pieces, then Llama-3's 256 special tokens at ids
128000.. (``<|begin_of_text|>`` = 128000, ``<|end_of_text|>`` = 128001):
128,256 ids, the text vocabulary of CSM-1B. ``with_post_processor`` adds
the template the reference installs (begin + text + end) so a test can
encode "the reference's way".
"""

from __future__ import annotations

import json

SENTENCES = [
    "Hello there, how are you doing today?",
    "I am fine, thank you. And you?",
    "The past is just a story we tell ourselves.",
    "Are you coming tonight? We could meet at eight.",
    "Speech models learn prosody from context.",
]
BASE_VOCAB, N_SPECIAL = 128_000, 256


def special_tokens() -> list[str]:
  names = ["<|begin_of_text|>", "<|end_of_text|>"]
  names += [f"<|reserved_special_token_{i}|>" for i in range(N_SPECIAL - 2)]
  return names


def build(base_vocab: int = BASE_VOCAB, n_special: int = N_SPECIAL,
          with_post_processor: bool = False):
  from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # pylint: disable=g-import-not-at-top
  from tokenizers.processors import TemplateProcessing  # pylint: disable=g-import-not-at-top
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(
      vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False))
  data = json.loads(tok.to_str())
  vocab = data["model"]["vocab"]
  for i in range(len(vocab), base_vocab):
    vocab[f"<filler_{i}>"] = i
  data["added_tokens"] = [
      {"id": base_vocab + i, "content": name, "single_word": False,
       "lstrip": False, "rstrip": False, "normalized": False, "special": True}
      for i, name in enumerate(special_tokens()[:n_special])]
  tok = Tokenizer.from_str(json.dumps(data))
  if with_post_processor:
    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    tok.post_processor = TemplateProcessing(
        single=f"{bos}:0 $A:0 {eos}:0",
        pair=f"{bos}:0 $A:0 {eos}:0 {bos}:1 $B:1 {eos}:1",
        special_tokens=[(bos, tok.token_to_id(bos)),
                        (eos, tok.token_to_id(eos))])
  return tok


def write_llama3_like_tokenizer(path, **kw) -> str:
  build(**kw).save(str(path))
  return str(path)
