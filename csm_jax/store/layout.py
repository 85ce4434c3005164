"""Names of the files a training workdir and an export directory hold.

One place for them, so that the trainer that writes a run and the loaders
that read it (generation, export, evaluation) agree by construction.
"""

from __future__ import annotations

import json
import os

RUN_CONFIG = "run_config.json"    # the run's whole config (workdir)
STRUCTURE = "config.json"         # what its checkpoints depend on (workdir)
CHECKPOINTS = "checkpoints"       # Orbax CheckpointManager root (workdir)
CORRUPT_CHECKPOINTS = "corrupt_checkpoints"  # set aside, unrestorable (workdir)
LOCK = "lock"                     # the running trainer's pid/host (workdir)
METRICS = "metrics.jsonl"         # one row per logged step (workdir)
TENSORBOARD = "tb"                # TensorBoard events (workdir)
TOKENIZER = "tokenizer.model"     # the run's text tokenizer (both)
TOKENIZER_JSON = "tokenizer.json"  # or a Llama-3 one (converted CSM-1B)
CODEC_RUN = "codec"               # the run's own codec training (workdir)
EXPORT_CONFIG = "config.json"     # the exported model's config (export)
EXPORT_INFO = "export.json"       # source step and dtype (export)
EXPORT_PARAMS = "params"          # Orbax parameters, per group (export)
EXPORT_EXTRA = "extra"            # Orbax non-parameter variables (export)
EXPORT_CODEC = "codec"            # the codec the model speaks with (export)


def absolute(path: str) -> str:
  """``path`` made absolute; URLs (gs://...) are left as they are.

  Orbax refuses relative checkpoint paths, and a relative path would also
  change meaning if the process changed directory.
  """
  return path if "://" in path else os.path.abspath(path)


def is_export(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, EXPORT_INFO))


def is_workdir(directory: str) -> bool:
  return os.path.exists(os.path.join(directory, RUN_CONFIG))


def own_codec_export(workdir: str) -> str:
  """Where a CSM run exports the codec it trains for itself."""
  return os.path.join(workdir, CODEC_RUN, "export")


def run_codec_dir(config, workdir: str) -> str | None:
  """The codec a CSM run's data was tokenized with (None for token data)."""
  if config.task != "csm" or config.data.source != "dialogues":
    return None
  if config.data.codec_dir:
    return config.data.codec_dir
  # A fine-tuned model speaks with the codec of the model it started from.
  source = config.train.get("init_from", "")
  found = codec_of_run(absolute(source)) if source else None
  return found or own_codec_export(workdir)


def codec_of_run(directory: str) -> str | None:
  """The codec a run or export speaks with: an export's own codec, a
  workdir's trained codec, or the codec directory its config names."""
  from csm_jax.codec.io import is_codec_dir  # pylint: disable=g-import-not-at-top
  for candidate in (os.path.join(directory, EXPORT_CODEC),
                    own_codec_export(directory)):
    if is_codec_dir(candidate):
      return candidate
  try:
    with open(os.path.join(directory, RUN_CONFIG)) as f:
      given = json.load(f).get("data", {}).get("codec_dir", "")
  except (OSError, ValueError, AttributeError):
    return None
  return given if isinstance(given, str) and given and is_codec_dir(given) \
      else None


def tokenizer_path(directory: str) -> str | None:
  """The text tokenizer a workdir or export holds (None when it has none)."""
  for name in (TOKENIZER, TOKENIZER_JSON):
    path = os.path.join(directory, name)
    if os.path.exists(path):
      return path
  return None
