"""The dialogue corpus a config names: build it if needed, read its splits.

``config.data.corpus`` picks the tfds dataset (the embedded
``synthetic_dialogues`` by default, or ``manifest_dialogues``/``dailytalk``
that users prepare from their own audio); ``corpus_size`` its build size;
``data_dir`` where it lives. Codec training reads its audio through
``CorpusClips``; CSM training reads its turns.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from absl import logging

from csm_jax.data import tfds_dialogues
from csm_jax.data.audio import resample

SPLITS = ("train", "validation")


def data_dir(config) -> str:
  return config.data.data_dir or tfds_dialogues.default_data_dir()


def ensure_corpus(config) -> None:
  """Builds the embedded corpus on first use; other corpora must exist."""
  d = config.data
  if d.corpus != tfds_dialogues.NAME:
    return  # prepared by the user (python -m csm_jax.prepare ...)
  b = tfds_dialogues.builder(d.corpus_size, data_dir(config))
  if b.is_prepared():
    return
  logging.info("building the %s corpus (%s) in %s: first run only",
               d.corpus, d.corpus_size, data_dir(config))
  print(f"Building the embedded {d.corpus} corpus ({d.corpus_size}) in "
        f"{data_dir(config)}; this happens once.", flush=True)
  # A fresh interpreter: the builder forks synthesis workers, and forking a
  # process that has started JAX's threads can deadlock.
  cmd = [sys.executable, "-m", "csm_jax.prepare", f"--dataset={d.corpus}",
         f"--size={d.corpus_size}", f"--data_dir={data_dir(config)}"]
  if subprocess.run(cmd, check=False).returncode != 0:
    raise RuntimeError(f"building the corpus failed: {' '.join(cmd)}")


def source(config, split: str):
  """Random-access records of one split of the configured corpus."""
  d = config.data
  if d.corpus == tfds_dialogues.NAME:
    return tfds_dialogues.data_source(split, d.corpus_size, data_dir(config))
  # pylint: disable=g-import-not-at-top
  from csm_jax.data import tfds_manifest
  if d.corpus == "manifest_dialogues":
    # corpus_size names the manifest build (prepare --name=...).
    return tfds_manifest.data_source(split, d.corpus_size, data_dir(config))
  if d.corpus == "dailytalk":
    from csm_jax.data import tfds_dailytalk
    return tfds_manifest.source_of(
        tfds_dailytalk.builder(data_dir(config)), split,
        "python -m csm_jax.prepare --dataset=dailytalk --manual_dir=DIR")
  raise ValueError(f"config.data.corpus: unknown corpus {d.corpus!r}")


def dataset_dir(config) -> str:
  """Directory of the prepared corpus (token caches are written beside it)."""
  d = config.data
  # pylint: disable=g-import-not-at-top
  if d.corpus == tfds_dialogues.NAME:
    return str(tfds_dialogues.builder(d.corpus_size, data_dir(config)).data_dir)
  from csm_jax.data import tfds_manifest
  if d.corpus == "manifest_dialogues":
    return str(tfds_manifest.builder(name=d.corpus_size,
                                     data_dir=data_dir(config)).data_dir)
  from csm_jax.data import tfds_dailytalk
  return str(tfds_dailytalk.builder(data_dir(config)).data_dir)


def record_audio(rec, sample_rate: int) -> np.ndarray:
  """A record's audio as float32 mono at ``sample_rate``."""
  audio = np.asarray(rec["audio"])
  if audio.dtype == np.int16:
    audio = audio.astype(np.float32) / 32768.0
  rate = int(rec.get("sample_rate", sample_rate))
  return resample(audio.astype(np.float32), rate, sample_rate)


class CorpusClips:
  """Turn audio of one split at the codec's rate; opened on first use."""

  def __init__(self, config, split: str, sample_rate: int):
    self.config, self.split, self.sample_rate = config, split, sample_rate
    self._src = None

  def _source(self):
    if self._src is None:
      self._src = source(self.config, self.split)
    return self._src

  def __len__(self) -> int:
    return len(self._source())

  def __getitem__(self, i: int) -> np.ndarray:
    return record_audio(self._source()[i], self.sample_rate)
