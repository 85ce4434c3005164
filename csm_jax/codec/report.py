"""Quality report of a codec on audio files: metrics per level count + a mel plot.

``evaluate`` encodes every file once with all levels, decodes each prefix of
1, 2, 4, ... levels and the full count, and writes ``report.json`` (mean and
per-file mel distance, multi-resolution STFT distance, SI-SDR, bitrate, the
cross-correlation lag of the reconstruction, PESQ/STOI when installed) and
``mel.png`` (reference vs reconstruction log-mel spectrograms of the first
file). Spectral metrics run on segments of at most ``SEGMENT_SECONDS`` so the
memory of minutes-long files stays bounded; encode/decode are chunked by
``api`` for the same reason.
"""

from __future__ import annotations

import json
import os

import numpy as np

from csm_jax.codec import api
from csm_jax.config import codec as cfg
from csm_jax.codec import metrics, spectral
from csm_jax.codec.inputs import read_audio

SEGMENT_SECONDS = 30.0
_PLOT_FFT, _PLOT_MELS = 1024, 80


def level_counts(levels: int) -> list[int]:
  """1, 2, 4, ... below ``levels``, then ``levels`` itself."""
  return sorted({min(2 ** i, levels) for i in range(levels.bit_length() + 1)})


def codebook_stats(codes: np.ndarray, size: int) -> list[dict]:
  """Per level of (frames, levels) codes: the fraction of the codebook used
  and the perplexity exp(entropy) of the code histogram (1 = collapsed)."""
  out = []
  for lvl in range(codes.shape[1]):
    p = np.bincount(codes[:, lvl], minlength=size) / codes.shape[0]
    nz = p[p > 0]
    out.append({"level": lvl, "usage": float(np.mean(p > 0)),
                "perplexity": float(np.exp(-np.sum(nz * np.log(nz))))})
  return out


def _segmented(fn, ref: np.ndarray, est: np.ndarray, seg: int) -> float:
  """Length-weighted mean of fn(ref_piece, est_piece) over segments."""
  total, weight = 0.0, 0
  for i in range(0, len(ref), seg):
    r, e = ref[i:i + seg], est[i:i + seg]
    total += float(fn(r[None], e[None])) * len(r)
    weight += len(r)
  return total / weight


def score(ref: np.ndarray, est: np.ndarray, sr: int, hop: int,
          lo) -> dict[str, float]:
  """All metrics of one 1-D reference / reconstruction pair."""
  ref, est = metrics.align(ref, est)
  seg = int(SEGMENT_SECONDS * sr)
  out = {
      "mel_distance": _segmented(
          lambda r, e: metrics.mel_distance(r, e, sr), ref, est, seg),
      "stft_distance": _segmented(
          lambda r, e: metrics.stft_distance(r, e, lo.stft_resolutions),
          ref, est, seg),
      # SI-SDR on the host in float64 over the whole file (cheap, exact).
      "si_sdr_db": float(metrics.si_sdr(ref[None].astype(np.float64),
                                        est[None].astype(np.float64))[0]),
  }
  # Searching a whole frame either side shows any off-by-hop error.
  out["lag_samples"], out["lag_correlation"] = metrics.lag(ref, est, hop)
  out.update(metrics.perceptual_metrics(ref, est, sr))
  return out


def evaluate(graphdef, state, c, files, out_dir: str,
             n_levels: int | None = None) -> dict:
  """Writes report.json and mel.png into ``out_dir``; returns the report."""
  sr, hop = c.sample_rate, cfg.hop_length(c)
  top = c.rvq.levels if n_levels is None else n_levels
  if not 1 <= top <= c.rvq.levels:
    raise ValueError(f"--levels={top} but the codec was trained with "
                     f"{c.rvq.levels} levels")
  counts = level_counts(top)
  per_file, first, all_codes = [], None, []
  for path in files:
    ref = read_audio(path, sr, allow_silent=False)
    codes = np.asarray(api.encode(graphdef, state, ref[None], top))
    all_codes.append(codes[0])
    rows = {}
    for n in counts:
      est = np.asarray(api.decode(graphdef, state, codes, n))[0]
      rows[n] = score(ref, est, sr, hop, c.losses)
      if first is None and n == top:
        first = (path, ref, est[:len(ref)])
    per_file.append({"file": os.path.abspath(path),
                     "seconds": len(ref) / sr, "levels": rows})
  results = []
  for n in counts:
    keys = per_file[0]["levels"][n].keys()
    mean = {k: float(np.mean([f["levels"][n][k] for f in per_file]))
            for k in keys}
    mean["lag_samples"] = [f["levels"][n]["lag_samples"] for f in per_file]
    results.append({"levels": n, "bitrate_bps": metrics.bitrate(
        n, c.rvq.codebook_size, cfg.frame_rate(c)), **mean})
  report = {
      "codec": {"sample_rate": sr, "hop": hop, "frame_rate":
                cfg.frame_rate(c), "levels": c.rvq.levels,
                "codebook_size": c.rvq.codebook_size},
      "alignment": "reference and reconstruction compared from sample 0, "
                   "reconstruction cropped to the reference length (the "
                   "causal codec adds no delay); lag_samples is the "
                   "measured cross-correlation offset (0 when aligned)",
      "results": results,
      "codebooks": codebook_stats(np.concatenate(all_codes),
                                  c.rvq.codebook_size),
      "files": per_file}
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  plot_mels(first[1], first[2], sr, os.path.join(out_dir, "mel.png"),
            f"{os.path.basename(first[0])}, {top} levels, "
            f"{results[-1]['bitrate_bps']:.0f} bps")
  return report


def _log_mel(x: np.ndarray, sr: int) -> np.ndarray:
  hop = _PLOT_FFT // 4
  x = np.pad(np.asarray(x, np.float64), _PLOT_FFT // 2)
  n = 1 + (len(x) - _PLOT_FFT) // hop
  frames = x[np.arange(n)[:, None] * hop + np.arange(_PLOT_FFT)]
  mag = np.abs(np.fft.rfft(frames * np.hanning(_PLOT_FFT), axis=-1))
  mel = mag @ spectral.mel_filterbank(sr, _PLOT_FFT, _PLOT_MELS)
  return 20 * np.log10(mel + 1e-5)


def plot_mels(ref: np.ndarray, est: np.ndarray, sr: int, path: str,
              title: str) -> None:
  """Reference above reconstruction, shared dB colour scale and time axis."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")  # files only; no display on servers
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  mr, me = _log_mel(ref, sr), _log_mel(est, sr)
  vmax = float(max(mr.max(), me.max()))
  vmin = vmax - 80.0  # 80 dB of range, like most spectrogram viewers
  seconds = len(ref) / sr
  fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                           constrained_layout=True)
  for ax, m, name in zip(axes, (mr, me), ("Reference", "Reconstruction")):
    im = ax.imshow(m.T, origin="lower", aspect="auto", cmap="magma",
                   extent=(0, seconds, 0, _PLOT_MELS), vmin=vmin, vmax=vmax)
    ax.set_title(name)
    ax.set_ylabel(f"Mel band (0-{sr // 2000} kHz)")
  axes[-1].set_xlabel("Time (s)")
  fig.suptitle(title)
  fig.colorbar(im, ax=axes, label="Log-mel magnitude (dB)")
  fig.savefig(path, dpi=100)
  plt.close(fig)
