"""The synthetic dialogue corpus as a TensorFlow Datasets builder.

``synthetic_dialogues`` writes ArrayRecord files (no TensorFlow needed) with
one example per turn: int16 audio, the transcript, labels (speaker, emotion,
arc, topic), timing within the conversation, prosody and semantic features
(``features``), what eSpeak spoke (phonemes and words with their start
times, ``turns.alignment_features_spec``), and the conversation id + turn index + turn count so the
conversational context of a turn can be rebuilt from its neighbours. Splits
are by conversation (every tenth conversation is validation), so no
conversation leaks across splits.

Configs set the size: ``tiny`` (target 1 min, but at least two
conversations so both splits exist: ~2-3 min; for tests), ``small`` (~10 min),
``default`` (~1 h), ``medium`` (~3 h: what a model on the aligned text
stream trains on without memorizing its sentences), ``large`` (~20 h); ``long`` (~1 h) holds conversations of
12-20 turns whose speakers keep a persona (``synthetic.long_dialogues``),
for the conversational memory. Read with::

  ds = grain_dataset("train", size="tiny")      # grain.MapDataset
  ds[0]["text"], ds[0]["audio"]

Data lives in ``turns.default_data_dir()``: ``$CSM_JAX_DATA_DIR`` or
``~/csm_jax_data``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import tensorflow_datasets as tfds

from csm_jax.data import features as feats_lib
from csm_jax.data.corpora import turns
from csm_jax.data.synthetic import dialogues as sd
from csm_jax.data.synthetic import long_dialogues
from csm_jax.data.synthetic import voices

NAME = "synthetic_dialogues"
SIZES_MINUTES = {"tiny": 1.0, "small": 10.0, "default": 60.0,
                 "medium": 180.0, "large": 1200.0}
# Sizes of long conversations (12-20 turns, personas); a separate table,
# so the sizes above plan exactly as before.
LONG_SIZES_MINUTES = {"long": 60.0}
ALL_SIZES = (*SIZES_MINUTES, *LONG_SIZES_MINUTES)
VALIDATION_EVERY = 10


@dataclasses.dataclass(eq=False)
class DialoguesConfig(tfds.core.BuilderConfig):
  minutes: float = 60.0
  seed: int = 0
  sample_rate: int = sd.DEFAULT_SAMPLE_RATE
  long_conversations: bool = False


def split_of(conversation_index: int) -> str:
  return ("validation" if conversation_index % VALIDATION_EVERY
          == VALIDATION_EVERY - 1 else "train")


class SyntheticDialogues(tfds.core.GeneratorBasedBuilder):
  """Multi-speaker eSpeak NG dialogues with emotion arcs, one example/turn."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "What eSpeak spoke: phonemes with their start "
                            "times, and word start times."}
  BUILDER_CONFIGS = [
      DialoguesConfig(name=name, minutes=m,
                      description=f"about {m:g} minutes of dialogue")
      for name, m in SIZES_MINUTES.items()
  ] + [
      DialoguesConfig(name=name, minutes=m, long_conversations=True,
                      description=f"about {m:g} minutes of long dialogue "
                      "(12-20 turns, speakers with personas)")
      for name, m in LONG_SIZES_MINUTES.items()
  ]
  DEFAULT_CONFIG_NAME = "default"

  def __init__(self, *, num_workers: int | None = None, progress: bool = True,
               **kwargs):
    self._num_workers = num_workers
    self._progress = progress
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=(
            "Synthetic conversations (2-3 speakers, "
            + ("12-20 turns, speakers with persistent personas"
               if self.builder_config.long_conversations else "4-12 turns")
            + ") spoken by "
            "eSpeak NG voices with emotion prosody; audio is int16 at "
            f"{self.builder_config.sample_rate} Hz. prosody fields: "
            + ", ".join(feats_lib.PROSODY_FIELDS)),
        features=tfds.features.FeaturesDict({
            **turns.turn_features_spec(),
            "emotion": tfds.features.ClassLabel(names=voices.EMOTION_NAMES),
            "arc": tfds.features.ClassLabel(names=voices.ARC_NAMES),
            "topic": tfds.features.Text(),
            **turns.alignment_features_spec(),
        }),
        supervised_keys=None,
        homepage="https://github.com/espeak-ng/espeak-ng",
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the corpus is synthesized
    cfg = self.builder_config
    # Two conversations at least, so both splits get one.
    plan = (long_dialogues.plan_long_corpus if cfg.long_conversations
            else sd.plan_corpus)
    plans = plan(cfg.seed, cfg.minutes * 60.0, min_conversations=2)
    by_split = {"train": [], "validation": []}
    for p in plans:
      by_split[split_of(p.index)].append(p)
    if not by_split["validation"]:
      # Tiny corpora can end before the tenth conversation.
      by_split["validation"].append(by_split["train"].pop())
    return {k: self._generate_examples(v) for k, v in by_split.items()}

  def _generate_examples(self, plans) -> Iterator[tuple[str, dict]]:
    cfg = self.builder_config
    for conv in sd.synthesize_all(plans, cfg.sample_rate, with_features=True,
                                  num_workers=self._num_workers,
                                  progress=self._progress):
      for t in conv.turns:
        yield f"{t.conversation_id}/{t.turn_index:03d}", {
            "audio": t.audio,
            "text": t.text,
            "conversation_id": t.conversation_id,
            "turn_index": t.turn_index,
            "num_turns": t.num_turns,
            "speaker_id": t.speaker_id,
            "speaker_name": t.speaker_name,
            "emotion": t.emotion,
            "arc": t.arc,
            "topic": t.topic,
            "sample_rate": t.sample_rate,
            "start_s": t.start_s,
            "end_s": t.end_s,
            "prosody": t.features["prosody"],
            "semantic": t.features["semantic"],
            **turns.alignment_record(t.phonemes, t.phoneme_starts, t.words,
                                     t.word_starts),
        }


def builder(size: str = "default", data_dir: str | None = None,
            **kwargs) -> SyntheticDialogues:
  if size not in ALL_SIZES:
    raise ValueError(f"unknown size {size!r}; choose from "
                     f"{sorted(ALL_SIZES)}")
  return SyntheticDialogues(config=size, data_dir=data_dir or
                            turns.default_data_dir(), file_format="array_record",
                            **kwargs)


def prepare(size: str = "default", data_dir: str | None = None,
            num_workers: int | None = None,
            progress: bool = True) -> SyntheticDialogues:
  """Builds the dataset if it is not built yet; returns the builder."""
  b = builder(size, data_dir, num_workers=num_workers, progress=progress)
  with turns.in_memory_shuffle():
    b.download_and_prepare()
  return b


def data_source(split: str, size: str = "default",
                data_dir: str | None = None):
  """Random-access source of a prepared split (raises if not prepared)."""
  b = builder(size, data_dir)
  if not b.is_prepared():
    raise FileNotFoundError(
        f"{NAME}/{size} is not prepared in {b.data_dir_root}; run "
        f"python -m csm_jax.prepare --dataset={NAME} --size={size}")
  return b.as_data_source(split=split)


def grain_dataset(split: str, size: str = "default",
                  data_dir: str | None = None, *, shuffle_seed: int | None = None):
  """The split as a ``grain.MapDataset`` (optionally shuffled)."""
  import grain
  ds = grain.MapDataset.source(data_source(split, size, data_dir))
  if shuffle_seed is not None:
    ds = ds.shuffle(seed=shuffle_seed)
  return ds
