"""Speak with a trained CSM.

  python -m csm_jax.generate --checkpoint=DIR --text="Hello there."
      --speaker=0 [--context=conv.json] --out=out.wav
  python -m csm_jax.generate --checkpoint=DIR --batch=prompts.jsonl --out_dir=wavs
  python -m csm_jax.generate --checkpoint=DIR --conversation=script.jsonl --out_dir=conv

DIR is an export (python -m csm_jax.export) or a training workdir. A context
file is a JSON list of earlier turns {"speaker", "text", "audio": wav path,
optionally "emotion"}; a batch file is JSONL with one {"text", "speaker",
"context", "out"} per line.

A model with the emotion tag (the default model) takes --emotion=sad: the
speaking rate and voice of that emotion. A model trained with the prosody
stream also takes --emotion=happy
--intensity=0.8 (or --style=N), --prosody=sketch.json or
--prosody_from=ref.wav (a contour stage 1 follows) and --pace=1.2, and
writes the plan against the realized F0 beside the wav (NAME.prosody.png);
see docs/prosody.md.
"""

import json
import os

from absl import app, flags

from csm_jax.cli import errors as cli_errors

_CKPT = flags.DEFINE_string("checkpoint", None, "Export dir or training workdir.")
_TEXT = flags.DEFINE_string(
    "text", None, "What to say. '-' reads it from standard input as it "
    "comes, speaking while it arrives (a model on the aligned text stream, "
    "model.text_stream='aligned'; e.g. an LLM's tokens piped in).")
_SPEAKER = flags.DEFINE_integer("speaker", 0, "Speaker id to say it as.")
_CONTEXT = flags.DEFINE_string("context", None, "JSON file of earlier turns.")
_OUT = flags.DEFINE_string("out", "out.wav", "Output wav (single request).")
_BATCH = flags.DEFINE_string("batch", None, "JSONL file of requests.")
_OUT_DIR = flags.DEFINE_string("out_dir", "generated",
                                "Output dir for --batch and --conversation.")
_CONVERSATION = flags.DEFINE_string(
    "conversation", None, "JSONL conversation script, one turn per line: "
    '{"speaker": 0, "text": ..., "audio": "a.wav"} for a recorded turn, '
    "without audio for a turn the model speaks; a model with the dual "
    "memory carries it across the turns (docs/memory.md).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 4, "Requests decoded together.")
_TEMP = flags.DEFINE_float("temperature", 0.9, "Sampling temperature (0: greedy).")
_TOP_K = flags.DEFINE_integer("top_k", 50, "Top-k filter (0: off).")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus filter (1.0: off).")
_MAX_S = flags.DEFINE_float("max_seconds", 10.0, "Longest utterance (> 0).")
_MIN_S = flags.DEFINE_float(
    "min_seconds", 0.0, "No end of speech before this (0 <= min < max).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_LEVELS = flags.DEFINE_integer(
    "levels", None, "Adaptive quality: generate only the first k codebooks.")
_BUDGET = flags.DEFINE_float(
    "latency_budget_ms", None, "Adaptive quality from a budget: measure the "
    "time to first audio on this machine for every level count and generate "
    "the most levels that fit (printed; instead of --levels).")
_FPC = flags.DEFINE_integer("frames_per_call", 4,
                            "Frames per compiled call (the streaming chunk).")
_SPECULATIVE = flags.DEFINE_integer(
    "speculative", 0, "Speculative depth decoding: codes drafted per round "
    "by the depth decoder's first block, verified in one pass (same output "
    "distribution; 0: off).", lower_bound=0)
_DTYPE = flags.DEFINE_enum(
    "dtype", "auto", ["auto", "float32", "bfloat16"],
    "Weights at inference. auto: float32 on CPU (XLA:CPU widens bf16 weights "
    "on every call, which is slower), the exported dtype on accelerators.")
# The prosody stream's controls (a model trained with
# --config.model.prosody.enabled=true; docs/prosody.md).
_EMOTION = flags.DEFINE_string(
    "emotion", None, "The turn's emotion, for a model with the prosody "
    "stream or the emotion tag (model.emotion_tag, the default model): one "
    "of the classes the model was trained on (the synthetic corpus: "
    "neutral, happy, sad, angry, calm, anxious; an unknown name lists "
    "them). It sets the speaking rate and voice quality. Default: the model "
    "chooses from the context.")
_INTENSITY = flags.DEFINE_float(
    "intensity", 0.5, "Prosody stream: with --emotion, how strongly, in "
    "[0, 1] (with 3 intensity bins: below 1/3 mild, above 2/3 strong).")
_STYLE = flags.DEFINE_integer(
    "style", None, "Prosody stream: a raw style token (emotion * "
    "intensity_bins + intensity) instead of --emotion.")
_PROSODY = flags.DEFINE_string(
    "prosody", None, "Prosody stream: a JSON contour that the plan "
    "follows instead of sampling, one value per frame, e.g. "
    '{"frame_rate": 25, "f0_hz": [180, 190, null, 220], "energy_db": '
    "[-25, -22, -60, -20]} (null or 0: unvoiced; or f0_z: speaker-"
    "normalized, f0_bin / energy_bin: token ids).")
_PROSODY_FROM = flags.DEFINE_string(
    "prosody_from", None, "Prosody stream: follow the pitch and energy "
    "contour of this recording (its melody, moved into the speaker's "
    "range).")
_PACE = flags.DEFINE_float(
    "pace", 1.0, "Prosody stream: rate multiplier in [0.25, 4]; 1.25 "
    "speaks 25% faster (the plan is resampled in time by 1/pace).")
flags.mark_flag_as_required("checkpoint")
# Checked as the flags are parsed, like the codec CLI's --levels, so a bad
# value fails before the model loads; --levels' upper bound (the model's
# codebooks) is checked once it has.
flags.register_validator("max_seconds", lambda v: v > 0,
                         "--max_seconds must be > 0")
flags.register_validator("min_seconds", lambda v: v >= 0,
                         "--min_seconds must be >= 0")
flags.register_multi_flags_validator(
    ["min_seconds", "max_seconds"],
    lambda f: f["min_seconds"] < f["max_seconds"],
    "--min_seconds must be below --max_seconds")
flags.register_validator("levels", lambda v: v is None or v >= 1,
                         "--levels must be at least 1")
flags.register_validator("latency_budget_ms", lambda v: v is None or v > 0,
                         "--latency_budget_ms must be > 0")
flags.register_validator("temperature", lambda v: v >= 0,
                         "--temperature must be >= 0")
flags.register_validator("top_k", lambda v: v >= 0, "--top_k must be >= 0")
flags.register_validator("top_p", lambda v: 0 < v <= 1,
                         "--top_p must be in (0, 1]")
flags.register_validator("frames_per_call", lambda v: v >= 1,
                         "--frames_per_call must be at least 1")
flags.register_validator("batch_size", lambda v: v >= 1,
                         "--batch_size must be at least 1")
flags.register_validator("speaker", lambda v: v >= 0,
                         "--speaker must be >= 0")
flags.register_validator("intensity", lambda v: 0 <= v <= 1,
                         "--intensity must be in [0, 1]")
flags.register_validator("pace", lambda v: 0.25 <= v <= 4,
                         "--pace must be in [0.25, 4]")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  # pylint: disable=g-import-not-at-top
  from csm_jax.inference import cli
  from csm_jax.inference.generator import Sampling
  from csm_jax.inference.loading import load_generator
  from csm_jax.cli.logs import quiet_library_logs
  quiet_library_logs()
  if sum(bool(v) for v in (_TEXT.value, _BATCH.value,
                            _CONVERSATION.value)) != 1:
    raise app.UsageError("give one of --text=..., --batch=FILE or "
                         "--conversation=FILE")
  # Request files first: a typo must not cost loading and compiling.
  prosody = cli.read_prosody_flags(_EMOTION.value, _INTENSITY.value,
                                   _STYLE.value, _PROSODY.value,
                                   _PROSODY_FROM.value, _PACE.value)
  if _BATCH.value:
    reqs = cli.read_requests(_BATCH.value)
  elif _CONVERSATION.value:
    from csm_jax.inference import conversation
    script = conversation.read_script(_CONVERSATION.value)
  else:
    specs = cli.read_context_specs(_CONTEXT.value)
    cli.check_output(_OUT.value)
  if _BUDGET.value is not None and _LEVELS.value is not None:
    raise app.UsageError("give --levels or --latency_budget_ms, not both")
  gen = load_generator(_CKPT.value, _DTYPE.value)
  sampling = Sampling(temperature=_TEMP.value, top_k=_TOP_K.value,
                      top_p=_TOP_P.value, seed=_SEED.value,
                      max_seconds=_MAX_S.value, min_seconds=_MIN_S.value,
                      n_levels=_LEVELS.value, frames_per_call=_FPC.value,
                      pace=prosody.pace, speculative=_SPECULATIVE.value)
  chosen = None
  if _BUDGET.value is not None:
    import dataclasses
    import sys
    from csm_jax.inference.latency import choose_levels
    print("measuring the time to first audio per level count ...",
          file=sys.stderr, flush=True)
    chosen = choose_levels(gen, sampling, _BUDGET.value,
                           _TEXT.value or "Hello there.", _SPEAKER.value)
    print(chosen.line(), file=sys.stderr, flush=True)
    sampling = dataclasses.replace(
        sampling, n_levels=None if chosen.levels == gen.n else chosen.levels)
  if _CONVERSATION.value:
    res = conversation.run_script(gen, _CONVERSATION.value, _OUT_DIR.value,
                                  sampling, turns=script)
  elif _BATCH.value:
    res = cli.run_batch(gen, _BATCH.value, _OUT_DIR.value, sampling,
                        _BATCH_SIZE.value, reqs=reqs, prosody=prosody)
  else:
    cli.check_sampling(gen, sampling)
    if _TEXT.value != "-":
      cli.check_fits(gen, _TEXT.value, _SPEAKER.value, sampling)
    context = cli.parse_turns(specs, gen.codec.sample_rate,
                              os.path.dirname(_CONTEXT.value or ""),
                              _CONTEXT.value or "--context")
    control = cli.control_for(gen, prosody, _SPEAKER.value, sampling,
                              _TEXT.value)
    res = cli.speak(gen, _TEXT.value, _SPEAKER.value, context, sampling,
                    _OUT.value, control=control)
  if chosen is not None:
    res["latency_budget"] = chosen.to_json()
  print(json.dumps(res, indent=2))


if __name__ == "__main__":
  cli_errors.run(main)
