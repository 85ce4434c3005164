"""What a CSM run needs before its first step: corpus, codec and tokenizer.

``python -m csm_jax.train --config=configs/debug.py --workdir=W`` on a fresh
machine builds the embedded corpus, trains the config's codec on it with the
same trainer (into ``W/codec``, resumable like any run), exports it to
``W/codec/export`` and trains a sentencepiece tokenizer on the transcripts
(``W/tokenizer.model``), saying so as it goes. Each step is skipped when its
output exists, or when the config points at an existing codec/tokenizer.
"""

from __future__ import annotations

import os
import shutil

from absl import logging

from csm_jax.config import schema
from csm_jax.data import corpus
from csm_jax.data.tfds_dialogues import read_texts

TOKENIZER = "tokenizer.model"


def codec_train_config(config):
  """A codec-task config that trains ``config.codec`` on ``config``'s corpus."""
  from csm_jax.config.presets import codec_training  # pylint: disable=g-import-not-at-top
  c = codec_training(config.codec, steps=config.data.codec_steps)
  for key in ("corpus", "corpus_size", "data_dir"):
    c.data[key] = config.data[key]
  return c


def ensure_codec(config, workdir: str) -> str:
  """Directory of the codec to tokenize with; trains it when missing."""
  from csm_jax.codec.io import save_codec  # pylint: disable=g-import-not-at-top
  if config.data.codec_dir:
    if not os.path.exists(os.path.join(config.data.codec_dir, "config.json")):
      raise schema.ConfigError("data.codec_dir", f"{config.data.codec_dir} "
                               "holds no codec (config.json + weights.npz)")
    return config.data.codec_dir
  out = os.path.join(workdir, "codec", "export")
  if os.path.exists(os.path.join(out, "weights.npz")):
    return out
  from csm_jax.training.trainer import Trainer  # pylint: disable=g-import-not-at-top
  cc = codec_train_config(config)
  print(f"No codec yet: training {cc.train.steps} steps of the codec in "
        f"{workdir}/codec (first run only).", flush=True)
  tr = Trainer(cc, os.path.join(workdir, "codec"))
  tr.run()
  model = tr.builder.merge(tr.builder.graphdef, tr.state["params"],
                           tr.state["extra"])
  tmp = out + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  save_codec(tmp, model.codec, cc.codec)
  os.replace(tmp, out)
  logging.info("codec exported to %s", out)
  return out


def ensure_tokenizer(config, workdir: str):
  """The run's tokenizer (trained on the corpus transcripts when missing)."""
  from csm_jax.text import TextTokenizer  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, TOKENIZER)
  if not os.path.exists(path):
    if config.data.tokenizer:
      shutil.copy(config.data.tokenizer, path)
    else:
      texts = list(read_texts(corpus.dataset_dir(config), "train"))
      print(f"Training a {config.model.text_vocab}-piece tokenizer on "
            f"{len(texts)} transcripts.", flush=True)
      TextTokenizer.train(texts, config.model.text_vocab, path)
  tok = TextTokenizer.load(path)
  if tok.vocab_size > config.model.text_vocab:
    raise schema.ConfigError(
        "model.text_vocab", f"{config.model.text_vocab} but the tokenizer "
        f"{path} has {tok.vocab_size} pieces")
  return tok


def dialogue_source(config, split: str, codec, tokenizer, seed: int = 0):
  """Packed CSM examples of one corpus split, tokenized by ``codec``."""
  from csm_jax.data.dialogue_examples import (DialogueExamples, TokenCache,  # pylint: disable=g-import-not-at-top
                                              fingerprint)
  src = corpus.source(config, split)
  files = [os.path.join(codec.directory, f)
           for f in ("config.json", "weights.npz")]
  path = TokenCache.path(corpus.dataset_dir(config), fingerprint(files), split)
  cache = TokenCache.load_or_build(src, codec.encode, path, codec.sample_rate)
  return DialogueExamples(src, cache, None, tokenizer.encode_turn,
                          config.model.n_codebooks, config.data.seq_len,
                          config.data.context_turns, config.data.loss_on, seed)
