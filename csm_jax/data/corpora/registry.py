"""The dialogue corpora by name: build one, open the one a config names.

``prepare_dataset`` builds a corpus on disk (what ``python -m
csm_jax.prepare`` runs). ``config.data.corpus`` picks the corpus a run reads:
the embedded ``synthetic_dialogues`` (built on first use by
``ensure_corpus``, in this process), or ``manifest_dialogues``/``dailytalk``
that users prepare from their own audio; ``corpus_size`` names its build
and ``data_dir`` where it lives. Codec training reads its audio through
``CorpusClips``; CSM training reads its turns through ``source``.
"""

from __future__ import annotations

import numpy as np
from absl import logging

from csm_jax.audio.io import resample
from csm_jax.config import schema
from csm_jax.config.errors import UserError
from csm_jax.data import phonemes
from csm_jax.data.corpora import synthetic
from csm_jax.data.corpora import turns

SPLITS = ("train", "validation")
DATASETS = (synthetic.NAME, "manifest_dialogues", "dailytalk")


def beam_options(spec: str | None):
  """Beam PipelineOptions from "runner=X,k=v" (None when not given)."""
  if not spec:
    return None
  from tensorflow_datasets.core import lazy_imports_lib  # pylint: disable=g-import-not-at-top
  beam = lazy_imports_lib.lazy_imports.apache_beam
  return beam.options.pipeline_options.PipelineOptions(
      flags=[f"--{opt.strip()}" for opt in spec.split(",") if opt.strip()])


def prepare_dataset(dataset: str, size: str = "default",
                    data_dir: str | None = None,
                    num_workers: int | None = None, *,
                    manifest: str | None = None, name: str | None = None,
                    manual_dir: str | None = None,
                    beam_pipeline_options: str | None = None) -> str:
  """Builds ``dataset`` (at ``size`` when synthetic); returns its directory."""
  # pylint: disable=g-import-not-at-top
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
  if dataset == "manifest_dialogues":
    if not manifest:
      raise ValueError("--dataset=manifest_dialogues needs --manifest=PATH")
    from csm_jax.data.corpora import manifest_builder
    return str(manifest_builder.prepare(
        manifest, name, data_dir,
        beam_options=beam_options(beam_pipeline_options)).data_dir)
  if dataset == "dailytalk":
    if not manual_dir:
      raise ValueError("--dataset=dailytalk needs --manual_dir=DIR (the "
                       "extracted DailyTalk download)")
    from csm_jax.data.corpora import dailytalk
    return str(dailytalk.prepare(
        manual_dir, data_dir,
        beam_options=beam_options(beam_pipeline_options)).data_dir)
  b = synthetic.prepare(size, data_dir, num_workers=num_workers)
  return str(b.data_dir)


def data_dir(config) -> str:
  return config.data.data_dir or turns.default_data_dir()


def ensure_corpus(config) -> None:
  """Builds the embedded corpus on first use; other corpora must exist."""
  d = config.data
  if d.corpus != synthetic.NAME:
    return  # prepared by the user (python -m csm_jax.prepare ...)
  if synthetic.builder(d.corpus_size, data_dir(config)).is_prepared():
    return
  logging.info("building the %s corpus (%s) in %s: first run only",
               d.corpus, d.corpus_size, data_dir(config))
  print(f"Building the embedded {d.corpus} corpus ({d.corpus_size}) in "
        f"{data_dir(config)}; this happens once.", flush=True)
  # Synthesis runs in spawned worker processes (never a fork of this one,
  # which may already run JAX's threads).
  prepare_dataset(d.corpus, d.corpus_size, data_dir(config))


def source(config, split: str):
  """Random-access records of one split of the configured corpus."""
  # pylint: disable=g-import-not-at-top
  d = config.data
  if d.corpus == synthetic.NAME:
    return synthetic.data_source(split, d.corpus_size, data_dir(config))
  from csm_jax.data.corpora import manifest_builder
  if d.corpus == "manifest_dialogues":
    # corpus_size names the manifest build (prepare --name=...).
    return manifest_builder.data_source(split, d.corpus_size,
                                        data_dir(config))
  if d.corpus == "dailytalk":
    from csm_jax.data.corpora import dailytalk
    return manifest_builder.source_of(
        dailytalk.builder(data_dir(config)), split,
        "python -m csm_jax.prepare --dataset=dailytalk --manual_dir=DIR")
  raise ValueError(f"config.data.corpus: unknown corpus {d.corpus!r}")


def dataset_dir(config) -> str:
  """Directory of the prepared corpus (token caches are written beside it)."""
  # pylint: disable=g-import-not-at-top
  d = config.data
  if d.corpus == synthetic.NAME:
    return str(synthetic.builder(d.corpus_size, data_dir(config)).data_dir)
  from csm_jax.data.corpora import manifest_builder
  if d.corpus == "manifest_dialogues":
    return str(manifest_builder.builder(name=d.corpus_size,
                                        data_dir=data_dir(config)).data_dir)
  from csm_jax.data.corpora import dailytalk
  return str(dailytalk.builder(data_dir(config)).data_dir)


def record_audio(rec, sample_rate: int) -> np.ndarray:
  """A record's audio as float32 mono at ``sample_rate``."""
  audio = np.asarray(rec["audio"])
  if audio.dtype == np.int16:
    audio = audio.astype(np.float32) / 32768.0
  rate = int(rec.get("sample_rate", sample_rate))
  return resample(audio.astype(np.float32), rate, sample_rate)


class PhonemesMissingError(UserError, ValueError):
  """The codec's phonetic head was asked for on a corpus without phonemes."""


class CorpusClips:
  """Turn audio of one split at the codec's rate; opened on first use.

  With ``phoneme_hop`` (samples per code frame) each clip is a dict that
  also holds the phoneme class under every code frame
  (``data.phonemes.frame_labels``), read from the corpus's alignment.
  """

  def __init__(self, config, split: str, sample_rate: int,
               phoneme_hop: int = 0):
    self.config, self.split, self.sample_rate = config, split, sample_rate
    self.phoneme_hop = phoneme_hop
    self._src = None
    classes = config.codec.get("phonetic", {}).get("classes", 0)
    if phoneme_hop and classes < phonemes.N_CLASSES:
      raise schema.ConfigError(
          "codec.phonetic.classes", f"{classes}, but the phoneme inventory "
          f"has {phonemes.N_CLASSES} classes")

  def _source(self):
    if self._src is None:
      self._src = source(self.config, self.split)
    return self._src

  def __len__(self) -> int:
    return len(self._source())

  def __getitem__(self, i: int):
    rec = self._source()[i]
    audio = record_audio(rec, self.sample_rate)
    if not self.phoneme_hop:
      return audio
    aligned = turns.phoneme_alignment(rec)
    if aligned is None:
      raise PhonemesMissingError(
          f"config.codec.phonetic.enabled: the corpus in "
          f"{dataset_dir(self.config)} records no phonemes; set "
          "--config.codec.phonetic.enabled=false (or weight 0) for it")
    n = -(-len(audio) // self.phoneme_hop)
    return {"audio": audio, "phoneme_targets": phonemes.frame_labels(
        *aligned, n, self.phoneme_hop / self.sample_rate)}
