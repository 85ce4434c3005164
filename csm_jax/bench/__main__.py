"""Benchmarks: ``python -m csm_jax.bench train --config=configs/debug.py``.

Subcommands:
  train   training throughput: frames/s, achieved FLOP/s, ratio to this
          machine's matmul peak measured in the same run.
  generate  ms per frame, real-time factor, first-chunk latency and the
          ratio to the memory-bandwidth floor (random weights).
  codec   codec encode/decode real-time factors (see csm_jax.bench.codec_bench).
  data    input pipeline batches/s against the trainer's steps/s (--workdir
          holds or receives the corpus, codec and tokenizer).
"""

import json

from absl import app, flags
from ml_collections import config_flags

from csm_jax.parallel.mesh import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file to benchmark, e.g. configs/debug.py.",
    lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (median reported).")
_FRAMES = flags.DEFINE_integer("frames", 16, "generate: timed frames.")
_FRAMES_PER_CALL = flags.DEFINE_integer(
    "frames_per_call", 1, "generate: frames decoded per compiled call.")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "data: a CSM run directory to read from.")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")

_COMMANDS = ("train", "generate", "codec", "data")


def main(argv):
  if len(argv) != 2 or argv[1] not in _COMMANDS:
    raise app.UsageError(f"usage: python -m csm_jax.bench {{{'|'.join(_COMMANDS)}}} "
                         "--config=FILE")
  initialize_distributed()
  if _CONFIG.value is None:
    raise app.UsageError("--config is required")
  # pylint: disable=g-import-not-at-top
  if argv[1] == "train":
    from csm_jax.bench.train_bench import bench_train
    result = bench_train(_CONFIG.value, steps=_STEPS.value)
  elif argv[1] == "generate":
    from csm_jax.bench.generate_bench import bench_generate
    result = bench_generate(_CONFIG.value, frames=_FRAMES.value,
                            frames_per_call=_FRAMES_PER_CALL.value)
  elif argv[1] == "data":
    if not _WORKDIR.value:
      raise app.UsageError("bench data needs --workdir")
    from csm_jax.bench.data_bench import bench_data
    result = bench_data(_CONFIG.value, _WORKDIR.value)
  else:
    from csm_jax.bench.codec_bench import bench_codec
    result = bench_codec(_CONFIG.value)
  width = max(len(k) for k in result)
  for k, v in result.items():
    if isinstance(v, float):
      v = f"{v:.4g}"
    print(f"{k:<{width}}  {v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  app.run(main)
