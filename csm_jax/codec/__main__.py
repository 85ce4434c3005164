"""Command line for the codec: encode, decode, round trip, evaluate, init.

  python -m csm_jax.codec init --size=debug /tmp/codec        # random weights
  python -m csm_jax.codec encode --checkpoint=DIR in.wav codes.npy
  python -m csm_jax.codec decode --checkpoint=DIR codes.npy out.wav
  python -m csm_jax.codec roundtrip --checkpoint=DIR in.wav out.wav
  python -m csm_jax.codec evaluate --checkpoint=DIR [--out_dir=R] a.wav ...

DIR (``--codec`` is an alias) is a saved codec directory, a codec trainer
workdir (its latest checkpoint is restored), or a CSM workdir or export
(its codec). ``--levels=n`` uses the first n levels (default: all).
Audio is read by ``csm_jax.codec.inputs.read_audio``: any rate and channel
count, short clips padded; a bad file exits 1 naming the file and reason.
``evaluate`` writes report.json and mel.png (default: next to the first
file, in ``<name>_codec_report/``) and prints the per-level table.
Speed: ``python -m csm_jax.bench codec --config=configs/codec.py``.

This module is the codec package's entrypoint: it is the one module of
``csm_jax.codec`` allowed to reach the store layer (to open training runs).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from absl import app, flags
from flax import nnx

from csm_jax.audio.io import write_wav
from csm_jax.codec import api, metrics, report
from csm_jax.codec.inputs import load_codes, read_audio
from csm_jax.codec.io import save_codec
from csm_jax.codec.model import init_codec
from csm_jax.config import codec as cfg
from csm_jax.config import errors

COMMANDS = {
    "init": "OUT_DIR: write a randomly initialised codec (--size, --seed)",
    "encode": "IN.wav OUT.npy: codes (frames x levels) of a wav",
    "decode": "IN.npy OUT.wav: audio of codes",
    "roundtrip": "IN.wav OUT.wav: encode then decode, with quality figures",
    "evaluate": "A.wav [B.wav ...]: quality per number of levels + mel plot",
}

_CKPT = flags.DEFINE_string(
    "checkpoint", None, "codec dir, codec trainer workdir, or CSM workdir or "
    "export")
flags.DEFINE_alias("codec", "checkpoint")
_LEVELS = flags.DEFINE_integer(
    "levels", None, "use the first n levels (default: all trained)")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "evaluate: report directory")
_SIZE = flags.DEFINE_enum("size", "debug", list(cfg.SIZES),
                          "init: codec row of the size table")
_SEED = flags.DEFINE_integer("seed", 0, "init: initialisation seed")
_traceback = errors.define_traceback_flag()


class UsageError(errors.UserError, ValueError):
  """Wrong subcommand or positional arguments."""


class CodecCommandError(errors.UserError):
  """A check of the codec API (codes, levels, shapes) failed on the input."""


def _load(directory):
  from csm_jax.store.codecs import load_any  # pylint: disable=g-import-not-at-top
  codec, c = load_any(directory)
  graphdef, state = nnx.split(codec)
  return graphdef, state, c


def _evaluate(graphdef, state, c, files) -> int:
  out_dir = _OUT_DIR.value or os.path.join(
      os.path.dirname(os.path.abspath(files[0])),
      os.path.splitext(os.path.basename(files[0]))[0] + "_codec_report")
  rep = report.evaluate(graphdef, state, c, files, out_dir, _LEVELS.value)
  print(f"{len(files)} files; levels  bitrate_bps  mel_distance  "
        "stft_distance  si_sdr_db  lag")
  for r in rep["results"]:
    print(f"{r['levels']:6d}  {r['bitrate_bps']:11.0f}  "
          f"{r['mel_distance']:12.4f}  {r['stft_distance']:13.4f}  "
          f"{r['si_sdr_db']:9.2f}  {max(r['lag_samples'], key=abs):+d}")
  print("codebooks (level: usage, perplexity): " + "  ".join(
      f"{b['level']}: {b['usage']:.2f}, {b['perplexity']:.1f}"
      for b in rep["codebooks"]))
  print(f"report: {out_dir}/report.json, {out_dir}/mel.png")
  return 0


def _positional(cmd: str, args: list[str]) -> list[str]:
  want = {"init": 1, "encode": 2, "decode": 2, "roundtrip": 2}
  if cmd == "evaluate":
    if not args:
      raise UsageError("evaluate needs at least one wav file")
  elif len(args) != want[cmd]:
    raise UsageError(f"{cmd} takes {COMMANDS[cmd].split(':')[0]}")
  if cmd != "init" and not _CKPT.value:
    raise UsageError(f"{cmd} needs --checkpoint=DIR")
  return args


def run(argv: list[str]) -> int:
  """Runs ``argv`` = [program, command, positional args...] (flags parsed)."""
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise UsageError("a command is required: " + ", ".join(COMMANDS))
  cmd, args = argv[1], _positional(argv[1], argv[2:])
  if cmd == "init":
    c = cfg.codec_config(_SIZE.value)
    save_codec(args[0], init_codec(c, _SEED.value), c)
    print(f"wrote a randomly initialised {_SIZE.value} codec to {args[0]}")
    return 0
  graphdef, state, c = _load(_CKPT.value)
  sr, levels = c.sample_rate, _LEVELS.value
  if cmd == "evaluate":
    return _evaluate(graphdef, state, c, args)
  src, dst = args
  if cmd == "encode":
    codes = np.asarray(api.encode(graphdef, state, read_audio(src, sr)[None],
                                  levels))[0]
    np.save(dst, codes)
    print(f"{codes.shape[0]} frames x {codes.shape[1]} levels -> {dst}")
  elif cmd == "decode":
    audio = np.asarray(api.decode(graphdef, state, load_codes(src),
                                  levels))[0]
    write_wav(dst, np.asarray(audio, np.float32), sr)
    print(f"{len(audio) / sr:.2f} s -> {dst}")
  else:  # roundtrip
    ref = read_audio(src, sr)
    codes = api.encode(graphdef, state, ref[None], levels)
    est = np.asarray(api.decode(graphdef, state, codes))[0, :len(ref)]
    write_wav(dst, np.asarray(est, np.float32), sr)
    n = codes.shape[-1]
    bps = metrics.bitrate(n, c.rvq.codebook_size, cfg.frame_rate(c))
    if np.abs(ref).max() == 0:  # all-zero input: distances are undefined
      print(f"levels={n} bitrate={bps:.0f} bps (silent input, no metrics)")
      return 0
    m = report.score(ref, est, sr, cfg.hop_length(c), c.losses)
    print(f"levels={n} bitrate={bps:.0f} bps "
          + " ".join(f"{k}={v:.4g}" for k, v in m.items()))
  return 0


def _run_checked(argv: list[str]) -> int:
  try:
    return run(argv)
  except (ValueError, RuntimeError) as e:
    # The api's checks of codes and levels raise plain ValueErrors about
    # the user's input; typed errors and OSErrors pass on as they are.
    if isinstance(e, errors.UserError):
      raise
    raise CodecCommandError(str(e)) from e


def guarded(argv: list[str]) -> int:
  """``run`` behind the project's error boundary (``config.errors``): one
  line on stderr and exit 1; ``--traceback`` or CSM_JAX_DEBUG=1 add the
  stack. This package is below ``csm_jax.cli``, so it calls the boundary
  directly."""
  return errors.guard(_run_checked, argv, show_stack=_traceback())


def main(argv: list[str] | None = None) -> int:
  """Parses ``argv`` (no program name) as the command line would; tests."""
  flags.FLAGS.unparse_flags()
  try:
    rest = flags.FLAGS(["csm_jax.codec", *(argv or [])])
  except flags.Error as e:
    errors.print_error(errors.flag_error_line(e))
    return 1
  return guarded(rest)


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(guarded(argv)),
          flags_parser=errors.parse_flags)
