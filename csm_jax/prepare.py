"""Builds a dataset on disk: ``python -m csm_jax.prepare --dataset=NAME``.

``synthetic_dialogues`` (embedded, no download) takes --size: tiny (two
conversations, ~2-3 min), small (~10 min), default (~1 h), medium (~3 h),
large (~20 h),
long (~1 h of 12-20 turn conversations whose speakers keep a persona).
``manifest_dialogues`` builds any corpus described by a JSONL manifest
(--manifest=PATH, optional --name; format in csm_jax/data/manifest.py).
``dailytalk`` builds the DailyTalk corpus you downloaded (--manual_dir=DIR).
``recordings`` turns long recordings and their transcripts into turns
(--manifest=PATH of recordings, optional --name; format in
csm_jax/data/corpora/recording_manifest.py): aligned with the corpus
recognizer, or --recognizer=DIR (an instruments cache or a recognizer
workdir), or --aligner=pkg.module:factory (any CTC model), and built as the
manifest_dialogues corpus <name>.
Real corpora can build on Apache Beam: --beam_pipeline_options=
"runner=DirectRunner,direct_num_workers=4" (see docs/data.md). Output goes
to --data_dir, else $CSM_JAX_DATA_DIR, else ~/csm_jax_data, as tfds
ArrayRecord files readable with the ``grain_dataset`` of each module
(``csm_jax.data.corpora``: ``synthetic``, ``manifest_builder``,
``dailytalk``).
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import app
from absl import flags

from csm_jax.cli import errors as cli_errors
from csm_jax.data.corpora.registry import DATASETS

_RECORDINGS = "recordings"
_DATASET = flags.DEFINE_enum("dataset", "synthetic_dialogues",
                             DATASETS + (_RECORDINGS,),
                             "which dataset to build")
_SIZE = flags.DEFINE_enum("size", "default",
                          ["tiny", "small", "default", "medium", "large",
                           "long"],
                          "corpus size: tiny 2 conversations (~2-3 min), "
                          "small ~10 min, "
                          "default ~1 h, medium ~3 h, large ~20 h of speech; "
                          "long ~1 h "
                          "of 12-20 turn conversations with personas")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "output root; default "
                                "$CSM_JAX_DATA_DIR or ~/csm_jax_data")
_WORKERS = flags.DEFINE_integer("num_workers", None, "synthesis/feature "
                                "worker processes; default: one per CPU "
                                "core; 0 synthesizes in this process")
_MANIFEST = flags.DEFINE_string("manifest", None, "manifest_dialogues: the "
                                "JSONL conversation manifest to build; "
                                "recordings: the JSONL recordings manifest")
_NAME = flags.DEFINE_string("name", None, "manifest_dialogues, recordings: "
                            "dataset config name; default from the "
                            "manifest's file name")
_RECOGNIZER = flags.DEFINE_string("recognizer", None, "recordings: the CTC "
                                  "recognizer that aligns transcripts: an "
                                  "instruments cache or a recognizer "
                                  "workdir; default: the embedded corpus's "
                                  "instruments (trained on first use)")
_ALIGNER = flags.DEFINE_string("aligner", None, "recordings: "
                               "'pkg.module:factory' returning any CTC "
                               "aligner (csm_jax.data.corpora.ctc_align."
                               "Aligner) instead of --recognizer")
_MIN_SCORE = flags.DEFINE_float("min_turn_score", None, "recordings: turns "
                                "whose alignment score is below this are "
                                "excluded (and counted in the report)")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "dailytalk: the "
                                  "extracted corpus (metadata.json, data/)")
_BEAM = flags.DEFINE_string("beam_pipeline_options", None, "build real "
                            "corpora on Apache Beam with these comma-"
                            "separated options, e.g. runner=DirectRunner")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  # pylint: disable=g-import-not-at-top
  from csm_jax.data.corpora.registry import prepare_dataset
  if _DATASET.value == _RECORDINGS:
    out = _prepare_recordings()
    print(f"{_RECORDINGS} ready in {out} (train on it with "
          f"--config.data.corpus=manifest_dialogues "
          f"--config.data.corpus_size={os.path.basename(os.path.dirname(out))})")
    return
  try:
    out = prepare_dataset(_DATASET.value, _SIZE.value, _DATA_DIR.value,
                          _WORKERS.value, manifest=_MANIFEST.value,
                          name=_NAME.value, manual_dir=_MANUAL_DIR.value,
                          beam_pipeline_options=_BEAM.value)
  except ValueError as e:
    # A broken or all-bad input (ManifestError, tfds' own checks): the
    # message says which file and why; the trace through tfds buries it.
    raise cli_errors.CommandError(str(e)) from e
  label = (_DATASET.value + "/" + _SIZE.value
           if _DATASET.value == "synthetic_dialogues" else _DATASET.value)
  print(f"{label} ready in {out}")


def _prepare_recordings() -> str:
  """Aligns, cuts and builds a recordings manifest; returns the build dir."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.data.corpora import recordings
  from csm_jax.data.corpora.registry import beam_options
  from csm_jax.eval import recording_aligner
  if not _MANIFEST.value:
    raise cli_errors.CommandError(
        "--dataset=recordings needs --manifest=PATH (one recording per line)")
  if _RECOGNIZER.value and _ALIGNER.value:
    raise cli_errors.CommandError("give --recognizer or --aligner, not both")
  options = recordings.Options()
  if _MIN_SCORE.value is not None:
    options.cut.min_turn_score = _MIN_SCORE.value
  # A broken manifest, or one whose every recording fails the checks that
  # need no decoding, fails before any model loads.
  try:
    recordings.precheck(_MANIFEST.value)
  except ValueError as e:
    raise cli_errors.CommandError(str(e)) from e
  if _ALIGNER.value:
    aligner = recording_aligner.from_spec(_ALIGNER.value)
  elif _RECOGNIZER.value:
    aligner = recording_aligner.RecognizerAligner(_RECOGNIZER.value)
  else:
    print("aligning with the embedded corpus's recognizer (built and "
          "trained on first use)", flush=True)
    aligner = recording_aligner.default_aligner()
  try:
    b = recordings.prepare(_MANIFEST.value, aligner, _NAME.value,
                           _DATA_DIR.value, options,
                           beam_options=beam_options(_BEAM.value))
  except ValueError as e:
    raise cli_errors.CommandError(str(e)) from e
  return str(b.data_dir)


if __name__ == "__main__":
  cli_errors.run(main)
