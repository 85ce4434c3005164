"""Builds a dataset on disk: ``python -m csm_jax.prepare --dataset=NAME``.

Only the embedded ``synthetic_dialogues`` corpus is built here; it needs no
download. Sizes: tiny (two conversations, ~2-3 min), small (~10 min),
default (~1 h), large (~20 h). Output goes to --data_dir, else $CSM_JAX_DATA_DIR, else
~/csm_jax_data, as tfds ArrayRecord files readable with
``csm_jax.data.tfds_dialogues.grain_dataset``.
"""

from __future__ import annotations

from typing import Sequence

from absl import app
from absl import flags

DATASETS = ("synthetic_dialogues",)

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


def prepare_dataset(dataset: str, size: str, data_dir: str | None = None,
                    num_workers: int | None = None) -> str:
  """Builds ``dataset`` at ``size``; returns the directory written."""
  if dataset != "synthetic_dialogues":
    raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
  from csm_jax.data import tfds_dialogues
  b = tfds_dialogues.prepare(size, data_dir, num_workers=num_workers)
  return str(b.data_dir)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  out = prepare_dataset(_DATASET.value, _SIZE.value, _DATA_DIR.value,
                        _WORKERS.value)
  print(f"{_DATASET.value}/{_SIZE.value} ready in {out}")


if __name__ == "__main__":
  app.run(main)
