"""Export a run for inference: ``python -m csm_jax.export --workdir=RUN --out=DIR``.

Writes the latest checkpoint's parameters (bf16 by default) with the run's
config, tokenizer and codec into DIR, which ``python -m csm_jax.generate
--checkpoint=DIR`` loads directly. A LoRA run's adapters are merged into
the weights (``--keep_adapters`` stores them separately instead).
"""

from absl import flags

from csm_jax.cli import errors as cli_errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Training run directory.")
_OUT = flags.DEFINE_string("out", None, "Directory to write the export to.")
_DTYPE = flags.DEFINE_enum("dtype", "bfloat16",
                           ["bfloat16", "float32", "float16"],
                           "Storage dtype of the exported parameters.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: latest).")
_KEEP = flags.DEFINE_bool(
    "keep_adapters", False, "For a LoRA run: store the adapters beside the "
    "frozen weights instead of merging them in (merged on load).")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from csm_jax.store.export import export
  from csm_jax.cli.logs import quiet_library_logs
  quiet_library_logs()
  info = export(_WORKDIR.value, _OUT.value, _DTYPE.value, _STEP.value,
                keep_adapters=_KEEP.value)
  print(f"exported step {info['step']} of {info['source']} to {_OUT.value} "
        f"({info['dtype']}; with {', '.join(info['files']) or 'no extras'})")


if __name__ == "__main__":
  cli_errors.run(main)
