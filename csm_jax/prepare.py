"""Builds a dataset on disk: ``python -m csm_jax.prepare --dataset=NAME``.

``synthetic_dialogues`` (embedded, no download) takes --size: tiny (two
conversations, ~2-3 min), small (~10 min), default (~1 h), large (~20 h).
``manifest_dialogues`` builds any corpus described by a JSONL manifest
(--manifest=PATH, optional --name; format in csm_jax/data/manifest.py).
``dailytalk`` builds the DailyTalk corpus you downloaded (--manual_dir=DIR).
Real corpora can build on Apache Beam: --beam_pipeline_options=
"runner=DirectRunner,direct_num_workers=4" (see docs/data.md). Output goes
to --data_dir, else $CSM_JAX_DATA_DIR, else ~/csm_jax_data, as tfds
ArrayRecord files readable with the ``grain_dataset`` of each module
(``tfds_dialogues``, ``tfds_manifest``, ``tfds_dailytalk``).
"""

from __future__ import annotations

from typing import Sequence

from absl import app
from absl import flags

DATASETS = ("synthetic_dialogues", "manifest_dialogues", "dailytalk")

_DATASET = flags.DEFINE_enum("dataset", "synthetic_dialogues", DATASETS,
                             "which dataset to build")
_SIZE = flags.DEFINE_enum("size", "default",
                          ["tiny", "small", "default", "large"],
                          "corpus size: tiny 2 conversations (~2-3 min), "
                          "small ~10 min, "
                          "default ~1 h, large ~20 h of speech")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "output root; default "
                                "$CSM_JAX_DATA_DIR or ~/csm_jax_data")
_WORKERS = flags.DEFINE_integer("num_workers", None, "synthesis/feature "
                                "processes; default: all CPU cores")
_MANIFEST = flags.DEFINE_string("manifest", None, "manifest_dialogues: the "
                                "JSONL conversation manifest to build")
_NAME = flags.DEFINE_string("name", None, "manifest_dialogues: dataset "
                            "config name; default from the manifest's file "
                            "name")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "dailytalk: the "
                                  "extracted corpus (metadata.json, data/)")
_BEAM = flags.DEFINE_string("beam_pipeline_options", None, "build real "
                            "corpora on Apache Beam with these comma-"
                            "separated options, e.g. runner=DirectRunner")


def beam_options(spec: str | None):
  """Beam PipelineOptions from "runner=X,k=v" (None when not given)."""
  if not spec:
    return None
  from tensorflow_datasets.core import lazy_imports_lib
  beam = lazy_imports_lib.lazy_imports.apache_beam
  return beam.options.pipeline_options.PipelineOptions(
      flags=[f"--{opt.strip()}" for opt in spec.split(",") if opt.strip()])


def prepare_dataset(dataset: str, size: str, data_dir: str | None = None,
                    num_workers: int | None = None, *,
                    manifest: str | None = None, name: str | None = None,
                    manual_dir: str | None = None,
                    beam_pipeline_options: str | None = None) -> str:
  """Builds ``dataset`` (at ``size`` when synthetic); returns its directory."""
  if dataset not in DATASETS:
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
  if dataset == "manifest_dialogues":
    if not manifest:
      raise ValueError("--dataset=manifest_dialogues needs --manifest=PATH")
    from csm_jax.data import tfds_manifest
    return str(tfds_manifest.prepare(
        manifest, name, data_dir,
        beam_options=beam_options(beam_pipeline_options)).data_dir)
  if dataset == "dailytalk":
    if not manual_dir:
      raise ValueError("--dataset=dailytalk needs --manual_dir=DIR (the "
                       "extracted DailyTalk download)")
    from csm_jax.data import tfds_dailytalk
    return str(tfds_dailytalk.prepare(
        manual_dir, data_dir,
        beam_options=beam_options(beam_pipeline_options)).data_dir)
  from csm_jax.data import tfds_dialogues
  b = tfds_dialogues.prepare(size, data_dir, num_workers=num_workers)
  return str(b.data_dir)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  from csm_jax.data.manifest import ManifestError
  try:
    out = prepare_dataset(_DATASET.value, _SIZE.value, _DATA_DIR.value,
                          _WORKERS.value, manifest=_MANIFEST.value,
                          name=_NAME.value, manual_dir=_MANUAL_DIR.value,
                          beam_pipeline_options=_BEAM.value)
  except (ManifestError, ValueError) as e:
    # A broken or all-bad input: the message says which file and why; the
    # trace through tfds would only bury it.
    raise SystemExit(f"error: {e}") from None
  label = (_DATASET.value + "/" + _SIZE.value
           if _DATASET.value == "synthetic_dialogues" else _DATASET.value)
  print(f"{label} ready in {out}")


if __name__ == "__main__":
  app.run(main)
