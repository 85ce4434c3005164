"""The turn record every dialogue corpus of this project stores, and its readers.

One tfds example per turn: int16 audio and its rate, transcript, speaker,
conversation id + turn index + turn count (so a turn's context is rebuilt
from its neighbours), timing, and the per-turn prosody and semantic
features. The embedded synthetic corpus and the manifest-built corpora all
write it, so training and evaluation read any corpus the same way.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np
import tensorflow_datasets as tfds

from csm_jax.data import features as feats_lib


def default_data_dir() -> str:
  return os.environ.get("CSM_JAX_DATA_DIR") or os.path.expanduser(
      "~/csm_jax_data")


def turn_features_spec() -> dict:
  """tfds features every dialogue-turn dataset of this project stores.

  Shared by ``synthetic_dialogues`` and the manifest-built datasets so that
  training code reads audio, text, speaker, timing and features of a turn
  the same way whichever corpus it came from; each builder adds its own
  label fields (emotion, arc, ...) on top.
  """
  return {
      # A plain int16 tensor: tfds' Audio feature imports TensorFlow.
      "audio": tfds.features.Tensor(shape=(None,), dtype=np.int16),
      "sample_rate": np.int32,
      "text": tfds.features.Text(),
      "conversation_id": tfds.features.Text(),
      "turn_index": np.int32,
      "num_turns": np.int32,
      "speaker_id": np.int32,
      "speaker_name": tfds.features.Text(),
      "start_s": np.float32,
      "end_s": np.float32,
      "prosody": tfds.features.Tensor(
          shape=(len(feats_lib.PROSODY_FIELDS),), dtype=np.float32),
      "semantic": tfds.features.Tensor(
          shape=(feats_lib.SEMANTIC_DIM,), dtype=np.float32),
  }


def alignment_features_spec() -> dict:
  """Time alignment of a turn's transcript, for corpora that know it.

  ``phonemes``: the phoneme symbols spoken, space-separated (eSpeak
  mnemonics for the embedded corpus); ``phoneme_starts``: each one's start
  in seconds from the turn's first sample; ``words`` / ``word_starts``: the
  character offset in ``text`` of each word spoken and its start.
  """
  f32 = lambda: tfds.features.Tensor(shape=(None,), dtype=np.float32)
  return {"phonemes": tfds.features.Text(), "phoneme_starts": f32(),
          "words": tfds.features.Tensor(shape=(None,), dtype=np.int32),
          "word_starts": f32()}


def alignment_record(phonemes, phoneme_starts, words, word_starts) -> dict:
  """The fields of ``alignment_features_spec`` for one turn."""
  return {"phonemes": " ".join(phonemes),
          "phoneme_starts": np.asarray(phoneme_starts, np.float32),
          "words": np.asarray(words, np.int32),
          "word_starts": np.asarray(word_starts, np.float32)}


def record_text(value) -> str:
  """A stored text field as str (records hold bytes)."""
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def phoneme_alignment(example) -> tuple[list[str], np.ndarray] | None:
  """(phoneme symbols, start seconds) of a stored turn, or None when its
  corpus records no phonemes (``text_alignment.turn_timing`` falls back on
  the turn's word starts)."""
  if "phonemes" not in example:
    return None
  symbols = record_text(example["phonemes"]).split()
  if not symbols:
    return None
  return symbols, np.asarray(example["phoneme_starts"], np.float32)


def word_record(text: str, word_starts) -> dict:
  """The fields of ``alignment_features_spec`` for a turn whose words'
  starts are known (None or NaN where one is not) and phonemes are not."""
  offsets, pos = [], 0
  for w in text.split():
    pos = text.index(w, pos)
    offsets.append(pos)
    pos += len(w)
  starts = [np.nan if s is None else float(s) for s in word_starts]
  return alignment_record((), (), offsets, starts)


def turn_positions(source) -> dict[str, list[int]]:
  """conversation id -> record positions of its turns in turn order.

  Records are stored in tfds' shuffled key order, so a turn's context
  (the turns before it) is found through this index. It decodes every
  record once; build it once per split and keep it.
  """
  convs: dict[str, list[tuple[int, int]]] = {}
  for pos in range(len(source)):
    ex = source[pos]
    cid = ex["conversation_id"]
    cid = record_text(cid)
    convs.setdefault(cid, []).append((int(ex["turn_index"]), pos))
  return {cid: [p for _, p in sorted(v)] for cid, v in convs.items()}


def read_texts(dataset_dir: str, split: str = "train") -> Iterator[str]:
  """Transcripts of a prepared dataset directory (``.../<config>/<version>``)."""
  b = tfds.builder_from_directory(dataset_dir)
  src = b.as_data_source(split=split)
  for i in range(len(src)):
    text = src[i]["text"]
    yield record_text(text)


@contextlib.contextmanager
def in_memory_shuffle(share: float = 0.5):
  """tfds shuffles a split's examples in memory up to 1 GB, then spills
  them to disk through TensorFlow's file API, which this project does not
  install: a split over 1 GB (the 3-hour corpus) failed there. Inside this
  context the in-memory limit is ``share`` of the memory available, so
  such a split is shuffled in memory; larger builds go through Beam."""
  from tensorflow_datasets.core import shuffle  # pylint: disable=g-import-not-at-top
  old = shuffle.MAX_MEM_BUFFER_SIZE
  try:
    avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    avail = 0
  shuffle.MAX_MEM_BUFFER_SIZE = max(old, int(share * avail))
  try:
    yield
  finally:
    shuffle.MAX_MEM_BUFFER_SIZE = old
