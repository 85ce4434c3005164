"""Command line for the codec: encode, decode, round trip, init, bench.

  python -m csm_jax.codec init --size debug /tmp/codec        # random weights
  python -m csm_jax.codec encode --codec /tmp/codec in.wav codes.npy
  python -m csm_jax.codec decode --codec /tmp/codec codes.npy out.wav
  python -m csm_jax.codec roundtrip --codec /tmp/codec in.wav out.wav
  python -m csm_jax.codec evaluate --codec /tmp/codec a.wav b.wav ...
  python -m csm_jax.codec bench --size mimi --seconds 10

Audio files are read with ``csm_jax.data.audio.load_audio`` (resampled to the
codec's rate, mono); a bad file exits with its AudioError reason.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.codec import bench
from csm_jax.codec import config as cfg
from csm_jax.codec import metrics
from csm_jax.codec.io import load_codec, save_codec
from csm_jax.codec.model import init_codec
from csm_jax.data.audio import load_audio, write_wav


def _load(directory):
  codec, c = load_codec(directory)
  graphdef, state = nnx.split(codec)
  return graphdef, state, c


def _read(path, sample_rate):
  return load_audio(path, sample_rate)[None, :]


def _write(path, audio, sample_rate):
  write_wav(path, np.asarray(audio, np.float32), sample_rate)


def _evaluate(graphdef, state, c, files) -> int:
  """Quality per number of levels (1, 2, 4, ... all) averaged over files."""
  sr, levels = c.sample_rate, c.rvq.levels
  counts = sorted({min(2 ** i, levels) for i in range(levels.bit_length() + 1)})
  rows = {n: [] for n in counts}
  for path in files:
    ref = _read(path, sr)
    codes = api.encode(graphdef, state, ref)
    for n in counts:
      est = np.asarray(api.decode(graphdef, state, codes, n))[:, :ref.shape[1]]
      rows[n].append((float(metrics.mel_distance(ref, est, sr)),
                      float(metrics.si_sdr(ref, est)[0])))
  print(f"{len(files)} files; levels  bitrate_bps  mel_distance  si_sdr_db")
  for n in counts:
    mel, sdr = np.mean(rows[n], axis=0)
    bps = metrics.bitrate(n, c.rvq.codebook_size, cfg.frame_rate(c))
    print(f"{n:6d}  {bps:11.0f}  {mel:12.4f}  {sdr:9.2f}")
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
  graphdef, state, c = _load(args.codec)
  sr = c.sample_rate
  if args.cmd == "evaluate":
    return _evaluate(graphdef, state, c, args.files)
  if args.cmd == "encode":
    codes = np.asarray(api.encode(graphdef, state, _read(args.input, sr),
                                  args.levels))[0]
    np.save(args.output, codes)
    print(f"{codes.shape[0]} frames x {codes.shape[1]} levels -> {args.output}")
  elif args.cmd == "decode":
    codes = np.load(args.input)
    if codes.ndim == 2:
      codes = codes[None]
    audio = np.asarray(api.decode(graphdef, state, codes, args.levels))[0]
    _write(args.output, audio, sr)
    print(f"{len(audio) / sr:.2f} s -> {args.output}")
  else:  # roundtrip
    ref = _read(args.input, sr)
    codes = api.encode(graphdef, state, ref, args.levels)
    est = np.asarray(api.decode(graphdef, state, codes))[:, :ref.shape[1]]
    _write(args.output, est[0], sr)
    n = codes.shape[-1]
    bps = metrics.bitrate(n, c.rvq.codebook_size, cfg.frame_rate(c))
    print(f"levels={n} bitrate={bps:.0f} bps "
          f"mel_distance={float(metrics.mel_distance(ref, est, sr)):.4f} "
          f"si_sdr={float(metrics.si_sdr(ref, est)[0]):.2f} dB "
          + " ".join(f"{k}={v:.3f}" for k, v in
                     metrics.perceptual_metrics(ref[0], est[0], sr).items()))
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
  for name in ("encode", "decode", "roundtrip"):
    s = sub.add_parser(name)
    s.add_argument("--codec", required=True, help="directory from save_codec")
    s.add_argument("--levels", type=int, default=None)
    s.add_argument("input")
    s.add_argument("output")
  s = sub.add_parser("evaluate", help="quality per number of levels")
  s.add_argument("--codec", required=True, help="directory from save_codec")
  s.add_argument("files", nargs="+")
  args = p.parse_args(argv)
  try:
    return run(args)
  except (ValueError, FileNotFoundError) as e:  # AudioError is a ValueError
    print(f"error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
