"""``manifest_dialogues``: a tfds builder for any corpus given as a manifest.

Reads a conversation manifest (format: ``csm_jax.data.corpora.manifest``), and
writes ArrayRecord files with one example per turn and the same fields as
``synthetic_dialogues`` (``turn_features_spec``), so
training code reads both alike. Per turn: the audio is loaded (downmixed or
one channel picked, resampled to 24 kHz), checked, loudness-normalized to
-23 dB (gated RMS), stored as int16, and described by prosody and semantic
features. Differences from the synthetic corpus:

* ``speaker_id`` numbers a conversation's speakers by first appearance
  (0, 1, ...), the per-conversation tags CSM prompts with; the corpus' own
  name is ``speaker_name``.
* ``emotion`` uses the synthetic classes plus ``"other"`` (common corpus
  labels are mapped: "happiness" -> happy, "no emotion" -> neutral, ...);
  the corpus' own label is ``emotion_name``.
* ``start_s``/``end_s``: the manifest's start (the recording's clock) when
  given, else right after the previous kept turn.
* Rejected turns are dropped and the survivors renumbered 0..n-1
  (``turn_index``/``num_turns``) so context code sees contiguous turns;
  ``source_turn_index`` is the manifest position.

Bad turns are counted per reason, skipped, printed in a summary and written
to ``ingest_report.json`` beside the ArrayRecord files; when no turn
survives the build fails with a ``ManifestError`` naming the manifest.

Splits are by conversation: the manifest's ``split`` field, else
``crc32(conversation_id) % 10 == 9`` goes to validation (stable under
reordering and sharding of the manifest).

With ``beam_runner``/``beam_options`` set, ``_generate_examples`` returns a
Beam PTransform, so the same build runs on DirectRunner, Dataflow, Flink or
Spark (see docs/data.md).

A build records what it was made from in ``inputs.json`` (a hash of the
parsed conversations, and of every audio file's size and modification
time). ``prepare`` rebuilds when its manifest or audio changed since, and
``data_source`` (what training reads) refuses a build whose manifest has
changed, naming the command that rebuilds it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import zlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from csm_jax.audio import io as audio_lib
from csm_jax.data import features as feats_lib
from csm_jax.data.corpora import ingest_report
from csm_jax.data.corpora import manifest as manifest_lib
from csm_jax.data.corpora.turns import (alignment_features_spec,
                                        default_data_dir, turn_features_spec,
                                        word_record)
from csm_jax.data.synthetic import voices

NAME = "manifest_dialogues"
SAMPLE_RATE = 24000
TARGET_DB = -23.0
OTHER_EMOTION = "other"
EMOTION_NAMES = voices.EMOTION_NAMES + (OTHER_EMOTION,)
# Labels of public corpora (DailyDialog/DailyTalk, Expresso, IEMOCAP-style)
# that mean one of the synthetic classes; anything else is "other".
_EMOTION_ALIASES = {
    "no emotion": "neutral", "none": "neutral", "default": "neutral",
    "happiness": "happy", "joy": "happy", "sadness": "sad",
    "anger": "angry", "fear": "anxious", "fearful": "anxious",
    "nervous": "anxious",
}
ManifestError = manifest_lib.ManifestError


def emotion_class(label: str) -> str:
  """The synthetic emotion class a corpus label maps to, else "other"."""
  key = label.strip().lower()
  key = _EMOTION_ALIASES.get(key, key)
  return key if key in voices.EMOTION_NAMES else OTHER_EMOTION


def split_of(conv: manifest_lib.Conversation) -> str:
  if conv.split:
    return conv.split
  return ("validation" if zlib.crc32(conv.conversation_id.encode(
      "utf-8", "surrogateescape")) % 10 == 9 else "train")


def process_conversation(conv: manifest_lib.Conversation,
                         sample_rate: int = SAMPLE_RATE,
                         target_db: float = TARGET_DB,
                         ) -> tuple[list[tuple[str, dict]], list[dict]]:
  """(tfds examples of the kept turns, status records of the rejected)."""
  kept, rejected = [], []
  for turn in conv.turns:
    try:
      text = manifest_lib.check_text(turn)
      x = manifest_lib.load_turn(turn, sample_rate)
      x = audio_lib.loudness_normalize(x, target_db, path=turn.audio)
    except manifest_lib.TurnRejected as e:
      rejected.append(ingest_report.status(conv.conversation_id, turn.index,
                                           turn.audio, e.reason, e.detail))
      continue
    except audio_lib.AudioError as e:     # loudness_normalize: silent
      rejected.append(ingest_report.status(conv.conversation_id, turn.index,
                                           turn.audio, e.reason, e.detail))
      continue
    kept.append((turn, x, text))
  speakers: dict[str, int] = {}
  examples, clock = [], 0.0
  for i, (turn, x, text) in enumerate(kept):
    start = clock if turn.start is None else turn.start
    clock = start + x.size / sample_rate
    feats = feats_lib.turn_features(x, sample_rate, text)
    examples.append((f"{conv.conversation_id}/{i:04d}", {
        "audio": audio_lib.to_int16(x),
        "sample_rate": sample_rate,
        "text": text,
        "conversation_id": conv.conversation_id,
        "turn_index": i,
        "num_turns": len(kept),
        "source_turn_index": turn.index,
        "speaker_id": speakers.setdefault(turn.speaker, len(speakers)),
        "speaker_name": turn.speaker,
        "emotion": emotion_class(turn.emotion),
        "emotion_name": turn.emotion,
        "start_s": start,
        "end_s": clock,
        "prosody": feats["prosody"],
        "semantic": feats["semantic"],
        **word_record(text if turn.word_starts else "",
                      turn.word_starts or ()),
    }))
  return examples, rejected


@dataclasses.dataclass(eq=False)
class ManifestConfig(tfds.core.BuilderConfig):
  manifest: str = ""          # empty: <manual_dir>/manifest.jsonl
  sample_rate: int = SAMPLE_RATE
  target_db: float = TARGET_DB


class ManifestDialogues(tfds.core.GeneratorBasedBuilder):
  """Dialogue turns of a JSONL conversation manifest, one example/turn."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "First release.",
                   "1.1.0": "Word starts of the turns whose manifest (or "
                            "alignment) gives them, for the aligned text "
                            "stream."}
  BUILDER_CONFIGS = [ManifestConfig(name="default",
                                    description="<manual_dir>/manifest.jsonl")]
  DEFAULT_CONFIG_NAME = "default"
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Put manifest.jsonl (format: csm_jax/data/manifest.py) and the audio "
      "it names in the manual dir, or build with ManifestConfig(manifest=).")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=("Conversation turns read from a manifest; int16 audio "
                     f"at {self.builder_config.sample_rate} Hz."),
        features=tfds.features.FeaturesDict({
            **turn_features_spec(),
            **alignment_features_spec(),
            "source_turn_index": np.int32,
            "emotion": tfds.features.ClassLabel(names=EMOTION_NAMES),
            "emotion_name": tfds.features.Text(),
        }),
        supervised_keys=None,
    )

  # -- what to read: subclasses for public corpora override these two -------
  def _source_name(self, dl_manager) -> str:
    """The manifest path (or corpus dir) that messages and reports name."""
    if self.builder_config.manifest:
      return os.path.abspath(self.builder_config.manifest)
    return os.fspath(dl_manager.manual_dir / "manifest.jsonl")

  def _conversations(self, dl_manager) -> Iterator[manifest_lib.Conversation]:
    return manifest_lib.read_manifest(self._source_name(dl_manager))

  # -- tfds hooks --------------------------------------------------------------
  def _download_and_prepare(self, dl_manager, download_config):
    self._beam = bool(download_config.beam_runner
                      or download_config.beam_options)
    self._prechecked: list[dict] = []
    self._source = self._source_name(dl_manager)
    try:
      super()._download_and_prepare(dl_manager, download_config)
    except ManifestError:
      raise
    except ValueError as e:
      # On Beam a split whose every turn failed makes tfds' writer raise
      # "The total number of generated examples is 0"; say why instead.
      if not (self._beam and "generated examples is 0" in str(e)):
        raise
      report = self._report(remove=False)
      if report.total and not report.kept:
        raise self._all_rejected(report) from e
      raise ManifestError(
          f"{self._source}: no turn of a split survived the checks (the "
          f"pipeline stopped before its rejection report was written): "
          f"{e}") from e
    report = self._report()
    if not report.kept:
      raise self._all_rejected(report)
    report.write(os.fspath(self.data_dir))
    # Inside tfds' temporary dir: the record moves with the finished build.
    write_inputs(os.fspath(self.data_dir), self._inputs)
    # data_dir is tfds' temporary "incomplete.*" dir until this returns;
    # name the place the report will be found.
    final = os.path.join(os.path.dirname(os.fspath(self.data_dir).rstrip(
        "/")), str(self.version), ingest_report.REPORT_NAME)
    print(report.summary() + f"\nreport: {final}")

  def _report(self, remove: bool = True) -> ingest_report.IngestReport:
    report = ingest_report.read_parts(os.fspath(self.data_dir), self._source,
                                      remove=remove)
    report.rejected.extend(self._prechecked)
    return report

  def _all_rejected(self, report, split: str | None = None) -> ManifestError:
    where = f" of the {split!r} split" if split else ""
    return ManifestError(
        f"{report.manifest}: every turn{where} was rejected ({report.total} "
        f"turns: {report.counts}); first: "
        + "; ".join(f"{r['audio']}: {r['reason']}"
                    for r in report.to_json()["rejected_turns"][:5]))

  def _split_generators(self, dl_manager):
    convs = list(self._conversations(dl_manager))
    self._inputs = input_record(self._source, convs)
    if not self._beam:
      # Drop turns that fail without decoding now, so no split is planned
      # around conversations that turn out empty (tfds cannot write an
      # empty split). On Beam every check runs in the workers instead.
      convs = [c for c in map(self._precheck, convs) if c.turns]
      if not convs:
        report = ingest_report.IngestReport(self._source)
        report.rejected.extend(self._prechecked)
        raise self._all_rejected(report)
    by_split: dict[str, list] = {s: [] for s in manifest_lib.SPLITS}
    for c in convs:
      by_split[split_of(c)].append(c)
    if not by_split["validation"]:
      # Small corpora may hash nothing to validation: hold out the last
      # conversation that did not ask for a split (as synthetic_dialogues).
      free = [c for c in by_split["train"] if not c.split]
      if len(by_split["train"]) > 1 and free:
        by_split["train"].remove(free[-1])
        by_split["validation"].append(free[-1])
    return {s: self._generate_examples(v, s)
            for s, v in by_split.items() if v}

  def _precheck(self, conv):
    ok = []
    for turn in conv.turns:
      try:
        manifest_lib.precheck_turn(turn)
        ok.append(turn)
      except manifest_lib.TurnRejected as e:
        self._prechecked.append(ingest_report.status(
            conv.conversation_id, turn.index, turn.audio, e.reason, e.detail))
    return dataclasses.replace(conv, turns=tuple(ok))

  def _generate_examples(self, conversations: Sequence, split: str):
    cfg = self.builder_config
    if self._beam:
      return _beam_transform(conversations, split, cfg.sample_rate,
                             cfg.target_db, os.fspath(self.data_dir))
    return self._python_examples(conversations, split)

  def _python_examples(self, conversations, split):
    cfg = self.builder_config
    rejected, kept = [], 0
    for conv in conversations:
      examples, bad = process_conversation(conv, cfg.sample_rate,
                                           cfg.target_db)
      rejected += bad
      kept += len(examples)
      yield from examples
    ingest_report.write_part(os.fspath(self.data_dir), split, rejected, kept)
    if not kept:
      report = self._report(remove=False)
      raise self._all_rejected(report, split if report.kept else None)


def _beam_transform(conversations, split, sample_rate, target_db, part_dir):
  """PTransform: conversations -> (key, example), report part on the side."""
  beam = tfds.core.lazy_imports.apache_beam

  def ingest(conv):
    examples, rejected = process_conversation(conv, sample_rate, target_db)
    yield from examples
    for r in rejected:
      yield beam.pvalue.TaggedOutput("rejected", r)

  def write(rejected, kept):
    ingest_report.write_part(part_dir, split, rejected, kept)

  @beam.ptransform_fn
  def transform(root):
    out = (root
           | "Create" >> beam.Create(list(conversations), reshuffle=True)
           | "Ingest" >> beam.FlatMap(ingest).with_outputs(
               "rejected", main="examples"))
    kept = out.examples | "CountKept" >> beam.combiners.Count.Globally()
    _ = (out.rejected
         | "ListRejected" >> beam.combiners.ToList()
         | "WriteReport" >> beam.Map(write, beam.pvalue.AsSingleton(kept)))
    return out.examples

  return transform()  # pylint: disable=no-value-for-parameter


# -- what a build was made from ---------------------------------------------
INPUTS = "inputs.json"


def input_record(source: str, conversations) -> dict:
  """Hashes of what a build reads: the parsed conversations (so the
  manifest's content, not its formatting) and each audio file's size and
  modification time."""
  convs, audio, stats = hashlib.sha256(), hashlib.sha256(), {}
  turns = 0
  for conv in conversations:
    convs.update(repr(dataclasses.astuple(conv)).encode("utf-8",
                                                        "surrogateescape"))
    for t in conv.turns:
      turns += 1
      if t.audio not in stats:
        try:
          st = os.stat(t.audio)
          stats[t.audio] = (st.st_size, st.st_mtime_ns)
        except OSError:
          stats[t.audio] = None
  for path in sorted(stats):
    audio.update(f"{path}\0{stats[path]}\n".encode("utf-8",
                                                    "surrogateescape"))
  return {"source": source, "conversations": convs.hexdigest(),
          "turns": turns, "audio": audio.hexdigest(),
          "audio_files": len(stats)}


def write_inputs(data_dir: str, record: dict) -> None:
  with open(os.path.join(data_dir, INPUTS), "w") as f:
    json.dump(record, f, indent=2)


def read_inputs(data_dir: str) -> dict | None:
  try:
    with open(os.path.join(data_dir, INPUTS)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def changes(old: dict | None, new: dict) -> str | None:
  """What differs between two input records (None: nothing)."""
  if old is None:
    return "the build has no record of its inputs"
  what = []
  if old.get("conversations") != new["conversations"]:
    what.append(f"its conversations ({old.get('turns')} turns then, "
                f"{new['turns']} now)")
  if old.get("audio") != new["audio"]:
    what.append(f"its audio files ({old.get('audio_files')} then, "
                f"{new['audio_files']} now; sizes or modification times)")
  return " and ".join(what) or None


def manifest_record(manifest: str) -> dict:
  """The input record of ``manifest`` and its audio as they are now."""
  path = os.path.abspath(manifest)
  return input_record(path, manifest_lib.read_manifest(path))


_CHECKED: set[str] = set()


def check_fresh(b: "ManifestDialogues") -> None:
  """Refuses a build whose manifest changed since (once per process).

  A build whose manifest is gone, or one without a record, is read as it
  is: there is nothing to compare it with.
  """
  data_dir = os.fspath(b.data_dir)
  if data_dir in _CHECKED:
    return
  old = read_inputs(data_dir)
  if old and os.path.isfile(old.get("source", "")):
    diff = changes(old, manifest_record(old["source"]))
    if diff:
      raise ManifestError(
          f"{b.builder_config.name} in {data_dir} is stale: {diff} of "
          f"{old['source']} changed since it was built; rebuild it with "
          f"python -m csm_jax.prepare --dataset={NAME} "
          f"--manifest={old['source']} --name={b.builder_config.name}")
  _CHECKED.add(data_dir)


# -- convenience: build and read by manifest ----------------------------------
def config_name(manifest: str) -> str:
  """A tfds config name from a manifest's file name ("My Calls.jsonl" ->
  "my_calls"), so each manifest gets its own dataset directory."""
  stem = os.path.splitext(os.path.basename(manifest))[0].lower()
  return re.sub(r"[^a-z0-9_]+", "_", stem).strip("_") or "manifest"


def builder(manifest: str | None = None, name: str | None = None,
            data_dir: str | None = None, **kwargs) -> ManifestDialogues:
  """The builder of ``manifest`` (or of an already built ``name``)."""
  if not manifest and not name:
    raise ValueError("give the manifest to build or the name of a built one")
  cfg = ManifestConfig(name=name or config_name(manifest),
                       manifest=os.path.abspath(manifest) if manifest else "",
                       description=f"turns of {manifest or name}")
  return ManifestDialogues(
      config=cfg, data_dir=data_dir or default_data_dir(),
      file_format="array_record", **kwargs)


def prepare(manifest: str, name: str | None = None,
            data_dir: str | None = None, *, beam_runner=None,
            beam_options=None) -> ManifestDialogues:
  """Builds the dataset of ``manifest`` if not built yet; returns the builder.

  ``beam_runner`` (e.g. ``"DirectRunner"``) or ``beam_options`` (a
  ``PipelineOptions``) run the build on Apache Beam.
  """
  b = builder(manifest, name, data_dir)
  mode = None
  if b.is_prepared():
    old = read_inputs(os.fspath(b.data_dir))
    diff = changes(old, manifest_record(manifest))
    if diff:
      why = (f"{diff} changed since it was built" if old else
             "it has no record of what it was built from")
      print(f"{b.builder_config.name} in {b.data_dir} may be out of date: "
            f"{why}; rebuilding it (and its token caches).", flush=True)
      mode = tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      beam_runner=beam_runner, beam_options=beam_options,
      **({"download_mode": mode} if mode else {})))
  _CHECKED.discard(os.fspath(b.data_dir))
  return b


def data_source(split: str, name: str, data_dir: str | None = None):
  """Random-access source of a built split (raises if not built or stale)."""
  b = builder(name=name, data_dir=data_dir)
  src = source_of(b, split, f"python -m csm_jax.prepare --dataset={NAME} "
                  "--manifest=PATH")
  check_fresh(b)
  return src


def grain_dataset(split: str, name: str, data_dir: str | None = None, *,
                  shuffle_seed: int | None = None):
  """The split as a ``grain.MapDataset`` (optionally shuffled)."""
  return as_grain(data_source(split, name, data_dir), shuffle_seed)


def source_of(b: tfds.core.DatasetBuilder, split: str, how_to_build: str):
  """``b``'s split as a data source; FileNotFoundError naming the fix."""
  if not b.is_prepared():
    raise FileNotFoundError(
        f"{b.name}/{b.builder_config.name} is not prepared in "
        f"{b.data_dir_root}; run {how_to_build}")
  return b.as_data_source(split=split)


def as_grain(source, shuffle_seed: int | None = None):
  import grain
  ds = grain.MapDataset.source(source)
  return ds if shuffle_seed is None else ds.shuffle(seed=shuffle_seed)
