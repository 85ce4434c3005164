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

from csm_jax.codec.handle import CodecHandle
from csm_jax.codec.io import is_codec_dir, save_codec
from csm_jax.config import codec as codec_cfg
from csm_jax.config import schema
from csm_jax.config.presets import codec_training
from csm_jax.data.corpora import registry
from csm_jax.data.corpora.turns import read_texts
from csm_jax.data.phoneme_tokenizer import PhonemeTokenizer
from csm_jax.data.tokenizer import TextTokenizer
from csm_jax.data.tokenizer_loader import load_tokenizer
from csm_jax.store import layout
from csm_jax.training.tasks.codec import CodecTask
from csm_jax.training.trainer import Trainer


def codec_train_config(config):
  """A codec-task config that trains ``config.codec`` on ``config``'s corpus."""
  c = codec_training(config.codec, steps=config.data.codec_steps)
  for key in ("corpus", "corpus_size", "data_dir"):
    c.data[key] = config.data[key]
  return c


def codec_task(config) -> CodecTask:
  """The codec task reading turn audio of the configured corpus."""
  sr = config.codec.sample_rate
  ph = config.codec.get("phonetic")
  hop = (codec_cfg.hop_length(config.codec)
         if ph is not None and ph.enabled and ph.weight > 0 else 0)
  return CodecTask(config, registry.CorpusClips(config, "train", sr, hop),
                   registry.CorpusClips(config, "validation", sr, hop))


def ensure_codec(config, workdir: str) -> str:
  """Directory of the codec to tokenize with; trains it when missing."""
  pretrained = _pretrained_file(config, layout.codec_of_run)
  if not config.data.codec_dir and pretrained and is_codec_dir(pretrained):
    return pretrained
  if config.data.codec_dir:
    if not is_codec_dir(config.data.codec_dir):
      raise schema.ConfigError("data.codec_dir", f"{config.data.codec_dir} "
                               "holds no codec (config.json + weights.npz)")
    return config.data.codec_dir
  out = layout.own_codec_export(workdir)
  if is_codec_dir(out):
    return out
  cc = codec_train_config(config)
  print(f"No codec yet: training {cc.train.steps} steps of the codec in "
        f"{workdir}/{layout.CODEC_RUN} (first run only).", flush=True)
  tr = Trainer(cc, os.path.join(workdir, layout.CODEC_RUN), codec_task(cc))
  tr.run()
  model = tr.builder.merge(tr.builder.graphdef, tr.state["params"],
                           tr.state["extra"])
  tmp = out + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  save_codec(tmp, model.codec, cc.codec)
  os.replace(tmp, out)
  logging.info("codec exported to %s", out)
  return out


def _pretrained_file(config, find) -> str | None:
  """What ``find(directory)`` finds in ``train.init_from`` (a fine-tuned
  model speaks with its own codec and tokenizer), or None."""
  source = config.train.get("init_from", "")
  return find(layout.absolute(source)) if source else None


def ensure_tokenizer(config, workdir: str) -> TextTokenizer:
  """The run's tokenizer (trained on the corpus transcripts when missing).

  ``data.tokenizer`` (or the tokenizer of ``train.init_from``) may be a
  sentencepiece model or a Llama-3 ``tokenizer.json``.
  """
  given = config.data.tokenizer or _pretrained_file(config,
                                                    layout.tokenizer_path)
  if given and given.endswith(".json"):
    path = os.path.join(workdir, layout.TOKENIZER_JSON)
    if not os.path.exists(path):
      shutil.copy(given, path)
    tok = load_tokenizer(path)
    if tok.vocab_size > config.model.text_vocab:
      raise schema.ConfigError(
          "model.text_vocab", f"{config.model.text_vocab} but the tokenizer "
          f"{given} has {tok.vocab_size} ids")
    return tok
  path = os.path.join(workdir, layout.TOKENIZER)
  if not os.path.exists(path):
    if given:
      shutil.copy(given, path)
    elif config.data.get("tokenizer_type") == "phoneme":
      print("Using eSpeak NG's phonemes as text tokens.", flush=True)
      PhonemeTokenizer().save(path)
    else:
      texts = list(read_texts(registry.dataset_dir(config), "train"))
      kind = config.data.get("tokenizer_type", "unigram")
      print(f"Training a {kind} tokenizer (at most {config.model.text_vocab} "
            f"pieces) on {len(texts)} transcripts.", flush=True)
      TextTokenizer.train(texts, config.model.text_vocab, path,
                          model_type=kind)
  tok = load_tokenizer(path)
  want = config.data.get("tokenizer_type", "unigram") == "phoneme"
  if want != (getattr(tok, "kind", "") == "phoneme"):
    raise schema.ConfigError(
        "data.tokenizer_type", f"{config.data.tokenizer_type!r} but the "
        f"run's tokenizer {path} is {'not ' if want else ''}a phoneme "
        "tokenizer; start a new workdir or point data.tokenizer at one")
  if tok.vocab_size > config.model.text_vocab:
    raise schema.ConfigError(
        "model.text_vocab", f"{config.model.text_vocab} but the tokenizer "
        f"{path} has {tok.vocab_size} pieces")
  return tok


def ensure_csm_inputs(config, workdir: str):
  """(codec, tokenizer) of a dialogue-data CSM run, built when missing."""
  registry.ensure_corpus(config)
  codec = CodecHandle.load(ensure_codec(config, workdir))
  m = config.model
  if codec.levels < m.n_codebooks or codec.codebook_size != m.codebook_size:
    raise schema.ConfigError(
        "model.n_codebooks", f"the codec in {codec.directory} has "
        f"{codec.levels} levels x {codec.codebook_size} codes; the model "
        f"predicts {m.n_codebooks} x {m.codebook_size}")
  return codec, ensure_tokenizer(config, workdir)
