"""Command line for the codec: encode, decode, round trip, evaluate, init, bench.

  python -m csm_jax.codec init --size debug /tmp/codec        # random weights
  python -m csm_jax.codec encode --checkpoint DIR in.wav codes.npy
  python -m csm_jax.codec decode --checkpoint DIR codes.npy out.wav
  python -m csm_jax.codec roundtrip --checkpoint DIR in.wav out.wav
  python -m csm_jax.codec evaluate --checkpoint DIR [--out_dir R] a.wav ...
  python -m csm_jax.codec bench --size mimi --seconds 10

DIR (``--codec`` is an alias) is a ``save_codec`` directory, a codec trainer
workdir (its latest checkpoint is restored) or a CSM workdir (its
``codec/export``). ``--levels`` uses the first n levels (default: all).
Audio is read by ``csm_jax.codec.inputs.read_audio``: any rate and channel
count, short clips padded; a bad file exits 1 naming the file and reason.
``evaluate`` writes report.json and mel.png (default: next to the first
file, in ``<name>_codec_report/``) and prints the per-level table.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec import bench
from csm_jax.codec import config as cfg
from csm_jax.codec import metrics, report
from csm_jax.codec.inputs import load_codes, read_audio
from csm_jax.codec.io import load_any, save_codec
from csm_jax.codec.model import init_codec
from csm_jax.data.audio import write_wav


def _load(directory):
  codec, c = load_any(directory)
  graphdef, state = nnx.split(codec)
  return graphdef, state, c


def _write(path, audio, sample_rate):
  write_wav(path, np.asarray(audio, np.float32), sample_rate)


def _evaluate(graphdef, state, c, args) -> int:
  out_dir = args.out_dir or os.path.join(
      os.path.dirname(os.path.abspath(args.files[0])),
      os.path.splitext(os.path.basename(args.files[0]))[0] + "_codec_report")
  rep = report.evaluate(graphdef, state, c, args.files, out_dir, args.levels)
  print(f"{len(args.files)} files; levels  bitrate_bps  mel_distance  "
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


def run(args) -> int:
  if args.cmd == "init":
    c = cfg.codec_config(args.size)
    save_codec(args.out, init_codec(c, args.seed), c)
    print(f"wrote a randomly initialised {args.size} codec to {args.out}")
    return 0
  if args.cmd == "bench":
    bench.main(["--size", args.size, "--seconds", str(args.seconds)])
    return 0
  graphdef, state, c = _load(args.checkpoint)
  sr = c.sample_rate
  if args.cmd == "evaluate":
    return _evaluate(graphdef, state, c, args)
  if args.cmd == "encode":
    codes = np.asarray(api.encode(graphdef, state,
                                  read_audio(args.input, sr)[None],
                                  args.levels))[0]
    np.save(args.output, codes)
    print(f"{codes.shape[0]} frames x {codes.shape[1]} levels -> {args.output}")
  elif args.cmd == "decode":
    codes = load_codes(args.input)
    audio = np.asarray(api.decode(graphdef, state, codes, args.levels))[0]
    _write(args.output, audio, sr)
    print(f"{len(audio) / sr:.2f} s -> {args.output}")
  else:  # roundtrip
    ref = read_audio(args.input, sr)
    codes = api.encode(graphdef, state, ref[None], args.levels)
    est = np.asarray(api.decode(graphdef, state, codes))[0, :len(ref)]
    _write(args.output, est, sr)
    n = codes.shape[-1]
    bps = metrics.bitrate(n, c.rvq.codebook_size, cfg.frame_rate(c))
    if np.abs(ref).max() == 0:  # all-zero input: distances are undefined
      print(f"levels={n} bitrate={bps:.0f} bps (silent input, no metrics)")
      return 0
    m = report.score(ref, est, sr, cfg.hop_length(c), c.losses)
    print(f"levels={n} bitrate={bps:.0f} bps "
          + " ".join(f"{k}={v:.4g}" for k, v in m.items()))
  return 0


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog="python -m csm_jax.codec",
                              description=__doc__,
                              formatter_class=argparse.RawTextHelpFormatter)
  sub = p.add_subparsers(dest="cmd", required=True)
  s = sub.add_parser("init", help="write a randomly initialised codec")
  s.add_argument("--size", default="debug", choices=cfg.SIZES)
  s.add_argument("--seed", type=int, default=0)
  s.add_argument("out")
  s = sub.add_parser("bench", help="encode/decode real-time factor")
  s.add_argument("--size", default="debug", choices=cfg.SIZES)
  s.add_argument("--seconds", type=float, default=10.0)
  for name in ("encode", "decode", "roundtrip", "evaluate"):
    s = sub.add_parser(name, help=("quality report per number of levels"
                                   if name == "evaluate" else None))
    s.add_argument("--checkpoint", "--codec", dest="checkpoint",
                   required=True, help="codec dir, codec trainer workdir or "
                   "CSM workdir")
    s.add_argument("--levels", type=int, default=None,
                   help="use the first n levels (default: all trained)")
    if name == "evaluate":
      s.add_argument("--out_dir", default=None)
      s.add_argument("files", nargs="+")
    else:
      s.add_argument("input")
      s.add_argument("output")
  args = p.parse_args(argv)
  try:
    return run(args)
  # AudioError, CodecNotFoundError and the api's checks are ValueErrors;
  # OSError covers unreadable paths and unwritable outputs.
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
