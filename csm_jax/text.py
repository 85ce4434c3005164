"""Train a text tokenizer: ``python -m csm_jax.text train --corpus_dir=DIR --out=tok.model``.

SentencePiece with one token per speaker tag ``[0]``..``[N-1]``, as CSM's
turns need (``csm_jax.data.tokenizer``). DIR may hold ``*.txt`` (one text
per line), ``*.jsonl`` (a ``"text"`` field per line) or a prepared
``synthetic_dialogues`` dataset (its train split's transcripts).
"""

from __future__ import annotations

from typing import Sequence

from absl import app, flags

from csm_jax.cli import errors as cli_errors

_CORPUS_DIR = flags.DEFINE_string(
    "corpus_dir", None, "directory of *.txt / *.jsonl texts or a prepared "
    "synthetic_dialogues dataset")
_VOCAB = flags.DEFINE_integer("vocab_size", 4096,
                              "upper bound on the vocabulary")
_OUT = flags.DEFINE_string("out", None, "where to write the .model file")
_SPEAKERS = flags.DEFINE_integer(
    "num_speakers", 64, "speaker tags [0]..[N-1] reserved as single tokens")
_MODEL_TYPE = flags.DEFINE_enum("model_type", "unigram", ["unigram", "bpe"],
                                "SentencePiece algorithm")


def main(argv: Sequence[str]) -> None:
  if len(argv) != 2 or argv[1] != "train":
    raise app.UsageError("usage: python -m csm_jax.text train "
                         "--corpus_dir=DIR --vocab_size=N --out=PATH")
  if not _CORPUS_DIR.value or not _OUT.value:
    raise app.UsageError("--corpus_dir and --out are required")
  # pylint: disable=g-import-not-at-top
  from csm_jax.data.tokenizer import TextTokenizer, read_corpus_texts
  texts = list(read_corpus_texts(_CORPUS_DIR.value))
  tok = TextTokenizer.train(texts, _VOCAB.value, _OUT.value,
                            num_speakers=_SPEAKERS.value,
                            model_type=_MODEL_TYPE.value)
  print(f"trained on {len(texts)} texts: {tok.vocab_size} pieces, "
        f"{tok.num_speakers} speaker tags -> {_OUT.value}")


if __name__ == "__main__":
  cli_errors.run(main)
