"""Benchmarks: ``python -m csm_jax.bench train --config=configs/debug.py``.

Subcommands:
  train   training throughput: frames/s, achieved FLOP/s, ratio to this
          machine's matmul peak measured in the same run, and to the step's
          own weight products timed alone at its shapes.
  generate  ms per frame, real-time factor, first-chunk latency and the
          ratio to the memory-bandwidth floor (random weights, or --workdir's
          trained ones); batch scaling, speculative depth decoding on/off,
          each against the limit this machine's matrix products allow, and
          the released CSM's eager PyTorch loop at the same dims.
  gpu     one accelerator's figures in one JSON (--json): CSM-1B bf16
          generation at batch 1 and 8, speculative on/off, train-step MFU,
          codec RTF (see csm_jax.bench.gpu_bench); --dims=debug on CPU.
  speculative  acceptance per codebook of speculative depth decoding on a
          trained run (--workdir, --text; no --config needed).
  serve   continuous batching of a trained run (--workdir): 16 requests of
          mixed lengths through B slots (--batches), frames/s and the ratio
          to one slot, median time to first audio.
  conversation  per-turn time to first audio over a --turns-turn
          conversation of a trained run (--workdir), with the KV cache kept
          between turns and with every prompt prefilled (turn 10 / turn 1).
  codec   codec encode/decode real-time factors (see csm_jax.bench.codec_bench).
  data    input pipeline batches/s against the trainer's steps/s (--workdir
          holds or receives the corpus, codec and tokenizer).
  stream_text  an aligned-stream run (--workdir) given its text whole and
          word by word: real-time factors, time to first audio and the
          latency streaming text in adds, in frames.
"""

import json

from absl import app, flags
from ml_collections import config_flags

from csm_jax.cli import errors as cli_errors
from csm_jax.parallel.hardware import tune_cpu_for_training
from csm_jax.parallel.mesh import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file to benchmark, e.g. configs/debug.py.",
    lock_config=True)
_STEPS = flags.DEFINE_integer("steps", 10, "Timed steps (median reported).")
_FRAMES = flags.DEFINE_integer("frames", 64,
                               "generate: frames per timed repeat.")
_REPEATS = flags.DEFINE_integer(
    "repeats", 21, "generate: timed repeats, each from the same prompt "
    "(median, spread, best), and rounds of each ratio's alternated timing "
    "(on a shared machine fewer than ~20 rounds let its ratios move by "
    "more than 10% between runs; 3 will do at CSM-1B dims on CPU); "
    "conversation: at most 3.", lower_bound=1)
_BATCHES = flags.DEFINE_list("batches", ["1", "2", "4", "8"],
                             "generate: batch sizes timed for scaling.")
_DRAFT = flags.DEFINE_integer(
    "speculative", 2, "generate/speculative: codes drafted per round by "
    "speculative depth decoding (generate: 0 skips it).", lower_bound=0)
_TEXT = flags.DEFINE_string("text", "The quick brown fox jumps over the "
                            "lazy dog.", "speculative: the prompt's text.")
_FRAMES_PER_CALL = flags.DEFINE_integer(
    "frames_per_call", None, "generate: frames decoded per compiled call "
    "(default: the Generator's streaming chunk, 4; 1 adds a host dispatch "
    "per frame).", lower_bound=1)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "data: a CSM run directory to read from; "
                               "generate: time its trained weights; "
                               "speculative: the run (or export) to load.")
_REFERENCE = flags.DEFINE_bool(
    "torch_reference", True, "generate: also time the released CSM's eager "
    "PyTorch frame loop at the same dims (needs torch: the interop extra; "
    "seconds per frame at CSM-1B dims).")
_JSON = flags.DEFINE_string("json", None, "Also write the figures here.")
_CODEC_CHUNK = flags.DEFINE_integer(
    "codec_chunk_frames", 1, "codec: code frames per streamed chunk.",
    lower_bound=1)
_REFERENCE_CODEC = flags.DEFINE_string(
    "reference_codec", None, "codec: a codec row of the size table (e.g. "
    "debug) whose streaming is timed in alternation with this one's, for "
    "their ratio under the same load.")
_DIMS = flags.DEFINE_enum("dims", "csm_1b", ["csm_1b", "debug"],
                          "gpu: model dims (debug: a CPU check).")

_TURNS = flags.DEFINE_integer("turns", 12, "conversation: replies spoken.",
                              lower_bound=10)

_COMMANDS = ("train", "generate", "codec", "data", "speculative", "gpu",
             "conversation", "serve", "stream_text")


def main(argv):
  if len(argv) != 2 or argv[1] not in _COMMANDS:
    raise app.UsageError(f"usage: python -m csm_jax.bench {{{'|'.join(_COMMANDS)}}} "
                         "--config=FILE")
  if argv[1] == "train":
    tune_cpu_for_training()  # as the train entrypoint does
  initialize_distributed()
  if argv[1] in ("speculative", "conversation", "serve", "stream_text"):
    if not _WORKDIR.value:
      raise app.UsageError(f"bench {argv[1]} needs --workdir")
  elif argv[1] != "gpu" and _CONFIG.value is None:
    raise app.UsageError("--config is required")
  # pylint: disable=g-import-not-at-top
  if argv[1] == "train":
    from csm_jax.bench.train_bench import bench_train
    result = bench_train(_CONFIG.value, steps=_STEPS.value)
  elif argv[1] == "generate":
    from csm_jax.bench.generate_bench import bench_generate, trained_model
    config, model = _CONFIG.value, None
    if _WORKDIR.value:
      config, model = trained_model(_WORKDIR.value)
    result = bench_generate(config, frames=_FRAMES.value,
                            frames_per_call=_FRAMES_PER_CALL.value,
                            repeats=_REPEATS.value,
                            batches=tuple(int(b) for b in _BATCHES.value),
                            draft=_DRAFT.value, model=model,
                            reference=_REFERENCE.value)
  elif argv[1] == "gpu":
    from csm_jax.bench.gpu_bench import bench_gpu
    result = bench_gpu(_DIMS.value, json_path=_JSON.value,
                       draft=_DRAFT.value)
    print(json.dumps(result, indent=2, default=float))
    return
  elif argv[1] == "speculative":
    from csm_jax.bench.speculative_bench import bench_speculative
    result = bench_speculative(_WORKDIR.value, _TEXT.value,
                               frames=_FRAMES.value,
                               drafts=(_DRAFT.value or 2,))
  elif argv[1] == "serve":
    from csm_jax.bench.serve_bench import bench_serve
    result = bench_serve(_WORKDIR.value,
                         batches=tuple(int(b) for b in _BATCHES.value))
  elif argv[1] == "conversation":
    from csm_jax.bench.conversation_bench import bench_conversation
    result = bench_conversation(_WORKDIR.value, turns=_TURNS.value,
                                repeats=min(_REPEATS.value, 3))
  elif argv[1] == "stream_text":
    from csm_jax.bench.stream_text_bench import bench_stream_text
    result = bench_stream_text(_WORKDIR.value, repeats=min(_REPEATS.value, 3),
                               frames_per_call=_FRAMES_PER_CALL.value or 4)
  elif argv[1] == "data":
    if not _WORKDIR.value:
      raise app.UsageError("bench data needs --workdir")
    from csm_jax.bench.data_bench import bench_data
    result = bench_data(_CONFIG.value, _WORKDIR.value)
  else:
    from csm_jax.bench.codec_bench import bench_codec
    result = bench_codec(_CONFIG.value, chunk_frames=_CODEC_CHUNK.value,
                         reference=_REFERENCE_CODEC.value,
                         rounds=max(_REPEATS.value // 4, 3))
  width = max(len(k) for k in result)
  for k, v in result.items():
    if isinstance(v, float):
      v = f"{v:.4g}"
    print(f"{k:<{width}}  {v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(result, f, indent=2)


if __name__ == "__main__":
  cli_errors.run(main)
