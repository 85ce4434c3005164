"""Speak with a trained CSM.

  python -m csm_jax.generate --checkpoint=DIR --text="Hello there."
      --speaker=0 [--context=conv.json] --out=out.wav
  python -m csm_jax.generate --checkpoint=DIR --batch=prompts.jsonl --out_dir=wavs

DIR is an export (python -m csm_jax.export) or a training workdir. A context
file is a JSON list of earlier turns {"speaker", "text", "audio": wav path};
a batch file is JSONL with one {"text", "speaker", "context", "out"} per line.
"""

import json

from absl import app, flags

_CKPT = flags.DEFINE_string("checkpoint", None, "Export dir or training workdir.")
_TEXT = flags.DEFINE_string("text", None, "What to say.")
_SPEAKER = flags.DEFINE_integer("speaker", 0, "Speaker id to say it as.")
_CONTEXT = flags.DEFINE_string("context", None, "JSON file of earlier turns.")
_OUT = flags.DEFINE_string("out", "out.wav", "Output wav (single request).")
_BATCH = flags.DEFINE_string("batch", None, "JSONL file of requests.")
_OUT_DIR = flags.DEFINE_string("out_dir", "generated", "Output dir for --batch.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Requests decoded together.")
_TEMP = flags.DEFINE_float("temperature", 0.9, "Sampling temperature (0: greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 50, "Top-k filter (0: off).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus filter (1.0: off).")
_MAX_S = flags.DEFINE_float("max_seconds", 10.0, "Longest utterance.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_LEVELS = flags.DEFINE_integer(
    "levels", None, "Adaptive quality: generate only the first k codebooks.")
_FPC = flags.DEFINE_integer("frames_per_call", 4,
                            "Frames per compiled call (the streaming chunk).")
_DTYPE = flags.DEFINE_enum(
    "dtype", "auto", ["auto", "float32", "bfloat16"],
    "Weights at inference. auto: float32 on CPU (XLA:CPU widens bf16 weights "
    "on every call, which is slower), the exported dtype on accelerators.")
flags.mark_flag_as_required("checkpoint")


def main(argv):
  del argv
  # pylint: disable=g-import-not-at-top
  from csm_jax.inference import cli
  from csm_jax.inference.generator import Sampling
  from csm_jax.inference.loading import load_generator
  from csm_jax.cli.logs import quiet_library_logs
  quiet_library_logs()
  if not _TEXT.value and not _BATCH.value:
    raise app.UsageError("give --text=... or --batch=FILE")
  gen = load_generator(_CKPT.value, _DTYPE.value)
  sampling = Sampling(temperature=_TEMP.value, top_k=_TOP_K.value,
                      top_p=_TOP_P.value, seed=_SEED.value,
                      max_seconds=_MAX_S.value, n_levels=_LEVELS.value,
                      frames_per_call=_FPC.value)
  if _BATCH.value:
    res = cli.run_batch(gen, _BATCH.value, _OUT_DIR.value, sampling,
                        _BATCH_SIZE.value)
  else:
    context = cli.read_context(_CONTEXT.value, gen.codec.sample_rate)
    res = cli.speak(gen, _TEXT.value, _SPEAKER.value, context, sampling,
                    _OUT.value)
  print(json.dumps(res, indent=2))


if __name__ == "__main__":
  app.run(main)
