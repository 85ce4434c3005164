"""Convert Sesame CSM-1B and Kyutai Mimi PyTorch weights into our formats.

  python -m csm_jax.convert csm --weights=model.safetensors --out=DIR \
      [--tokenizer=tokenizer.json] [--mimi=mimi.safetensors] [--dtype=...]
  python -m csm_jax.convert mimi --weights=mimi.safetensors --out=DIR

``csm`` writes an export (what ``python -m csm_jax.export`` writes:
``generate``, ``evaluate``, ``codec`` and ``train --config.train.init_from``
load it); with ``--tokenizer`` and ``--mimi`` it holds everything needed to
speak. ``mimi`` writes a codec directory. Weights are ``.safetensors``
(read without torch) or a torch pickle (``.pt``, needs the ``interop``
extra). The model shape is ``configs/csm_1b.py``'s unless ``--config``
names another (``--config.model.backbone.depth=...`` overrides). Nothing is
downloaded: docs/interop.md says where to get the files. A checkpoint that
does not match (a tensor of another name or shape, another model, a corrupt
file, a directory or a file of another kind, a tokenizer of another
vocabulary) is one line naming the file and the tensor, and nothing is
written. Tensors are read one at a time; ``--dtype=bfloat16`` (default) is
exact up to bf16 rounding, ``--dtype=float32`` exact (docs/interop.md).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from csm_jax.cli import errors as cli_errors

COMMANDS = ("csm", "mimi")
_WEIGHTS = flags.DEFINE_string("weights", None, "Checkpoint file to convert "
                               "(.safetensors, or .pt with torch installed).")
_OUT = flags.DEFINE_string("out", None, "Directory to write.")
_TOKENIZER = flags.DEFINE_string(
    "tokenizer", None, "csm: the Llama-3 tokenizer.json to ship in the export.")
_MIMI = flags.DEFINE_string("mimi", None, "csm: a Mimi checkpoint to convert "
                            "into the export's codec/.")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16",
                           ["bfloat16", "float32", "float16"],
                           "csm: storage dtype of the exported parameters "
                           "(float32 keeps the checkpoint's weights exactly).")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "csm: config of the model shape (default: Sesame "
    "CSM-1B's, configs/csm_1b.py).", lock_config=True)
flags.mark_flags_as_required(["weights", "out"])


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"give one command, {' or '.join(COMMANDS)}; got "
                         f"{argv[1:]}")
  # pylint: disable=g-import-not-at-top
  from csm_jax.cli.logs import quiet_library_logs
  from csm_jax.interop import convert
  quiet_library_logs()
  if argv[1] == "mimi":
    for name, flag in (("--tokenizer", _TOKENIZER), ("--mimi", _MIMI)):
      if flag.value:
        raise app.UsageError(f"{name} belongs to the csm command")
    info = convert.convert_mimi(_WEIGHTS.value, _OUT.value)
  else:
    config = _CONFIG.value
    if config is not None:
      config = config.copy_and_resolve_references()
    info = convert.convert_csm(_WEIGHTS.value, _OUT.value, config=config,
                               tokenizer=_TOKENIZER.value, mimi=_MIMI.value,
                               dtype=_DTYPE.value)
  print(json.dumps(info, indent=2))


if __name__ == "__main__":
  cli_errors.run(main)
