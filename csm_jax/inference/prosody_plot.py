"""A corpus turn's contour against its prosody tokens (docs/prosody.md).

``plot_tokens`` draws, for one turn, the pitch track (speaker-normalized
log F0, z) with the F0 bins' edges and the bin centre each codec frame
takes, the frame level (dBFS) with the energy bins' edges and each frame's
energy bin, and the voicing flag, titled with the turn's style token.
``plot_corpus_turn`` does it for a turn of a run's corpus, by the same
extraction and binning training uses:

  python -c "from csm_jax.inference.prosody_plot import plot_corpus_turn; \\
      plot_corpus_turn('runs/prosody', 'docs/img/prosody_tokens.png')"
"""

from __future__ import annotations

import numpy as np

from csm_jax.data import features
from csm_jax.data import prosody_tokens as pt


def _pyin_z(audio: np.ndarray, sample_rate: int, bins: pt.ProsodyBins,
            speaker: int) -> tuple[np.ndarray, np.ndarray]:
  """(times s, z) of the 40 ms pitch track (NaN where unvoiced)."""
  f0, voiced = features.f0_track(np.asarray(audio, np.float32), sample_rate)
  ok = np.asarray(voiced, bool) & np.isfinite(f0) & (f0 > 0)
  z = np.where(ok, bins.z_of(np.log2(np.where(ok, f0, 1.0)), speaker), np.nan)
  return np.arange(len(f0)) * pt.PYIN_HOP_S, z


def plot_tokens(path: str, audio: np.ndarray, sample_rate: int,
                frame_rate: float, bins: pt.ProsodyBins, speaker: int,
                style: int | None = None, title: str = "") -> str:
  """Writes the contour-against-tokens figure of one turn as a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  contour = pt.frame_contour(audio, sample_rate, frame_rate)
  f0_ids, e_ids = bins.tokens(contour, speaker)
  n = len(contour)
  t = np.arange(n + 1) / frame_rate            # frame edges
  voiced = f0_ids < bins.unvoiced
  fig, axes = plt.subplots(3, 1, figsize=(9, 6.4), sharex=True,
                           gridspec_kw={"height_ratios": [3, 2, 0.6]})
  ax = axes[0]
  r = bins.f0_range
  for edge in np.linspace(-r, r, bins.f0_bins + 1):
    ax.axhline(edge, color="#dddddd", lw=0.5, zorder=0)
  tz, z = _pyin_z(audio, sample_rate, bins, speaker)
  ax.plot(tz, z, ".", ms=3, color="#c44e52",
          label="pitch track (pyin, 40 ms), z = (log2 F0 - mean) / std")
  centres = np.where(voiced, bins.z_centres(f0_ids), np.nan)
  ax.stairs(centres, t, color="#4c72b0", lw=2, baseline=None,
            label=f"F0 token: bin centre ({bins.f0_bins} bins over "
                  f"±{r:g} std)")
  for i in np.flatnonzero(~voiced):
    ax.axvspan(t[i], t[i + 1], color="#eeeeee", zorder=0)
  ax.set_ylim(-r - 0.2, r + 0.2)
  ax.set_ylabel("speaker-normalized log F0 (z)")
  mean, std = bins.stats.speaker_f0(speaker)
  hz = ax.secondary_yaxis(
      "right", functions=(lambda v: 2.0 ** (mean + std * v),
                          lambda h: (np.log2(np.maximum(h, 1e-3)) - mean)
                          / std))
  hz.set_ylabel("F0 (Hz)")
  ax.legend(loc="upper right", fontsize=7)
  ax = axes[1]
  for edge in bins.stats.energy_edges:
    ax.axhline(edge, color="#dddddd", lw=0.6, zorder=0)
  ax.stairs(contour.energy_db, t, color="#c44e52", lw=1.2, baseline=None,
            label="frame level (RMS, dBFS)")
  # Bin 0 (silence) has no upper-and-lower pair of edges: drawn at the floor.
  level = np.where(e_ids == 0, pt.SILENCE_DB, bins.energy_centres(e_ids))
  ax.stairs(level, t, color="#4c72b0", lw=2, baseline=None,
            label=f"energy token: bin ({bins.energy_bins} bins, quantile "
                  "edges; 0 = silence, at the floor)")
  ax.set_ylabel("level (dBFS)")
  ax.set_ylim(pt.SILENCE_DB - 3, max(0.0, float(contour.energy_db.max())) + 3)
  ax.legend(loc="lower right", fontsize=7)
  ax = axes[2]
  ax.stairs(voiced.astype(float), t, color="#55a868", fill=True,
            baseline=0)
  ax.set_yticks([0, 1], ["unvoiced", "voiced"])
  ax.set_xlabel(f"seconds (codec frames of {1000 / frame_rate:g} ms)")
  described = bins.style_of(style) if style is not None else None
  style_txt = ("" if style is None else f"  |  style token {style}: "
               + (f"{described[0]}, intensity bin {described[1]}"
                  if described else "unknown"))
  fig.suptitle((title or "prosody tokens") + style_txt, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def plot_corpus_turn(checkpoint: str, path: str, split: str = "validation",
                     turn: int | None = None) -> str:
  """``plot_tokens`` for a turn of the corpus of ``checkpoint`` (a run with
  the prosody stream); default: the first turn of ``split`` of 2-4 s with
  a labelled emotion other than neutral."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.data import prosody_cache
  from csm_jax.data.corpora import registry
  from csm_jax.inference.loading import load_generator
  gen = load_generator(checkpoint)
  if gen.bins is None:
    raise pt.ProsodyError(f"{checkpoint}: the model has no prosody stream; "
                          "its tokens cannot be plotted")
  config, codec = gen.config, gen.codec
  turns = prosody_cache.ProsodyTurns(
      gen.bins, prosody_cache.contour_cache(config, split, codec.directory,
                                            codec.frame_rate))
  src = registry.source(config, split)
  names = gen.bins.stats.emotion_names
  if turn is None:
    for i in range(len(src)):
      rec = src[i]
      secs = len(rec["audio"]) / int(rec["sample_rate"])
      label = int(turns.cache.labels[i])
      if 2.0 <= secs <= 4.0 and 0 <= label < len(names) and \
          names[label] != "neutral":
        turn = i
        break
    turn = 0 if turn is None else turn
  rec = src[turn]
  text = rec["text"]
  text = text.decode() if isinstance(text, bytes) else str(text)
  audio = registry.record_audio(rec, int(rec["sample_rate"]))
  short = text if len(text) <= 60 else text[:57] + "..."
  return plot_tokens(path, audio, int(rec["sample_rate"]), codec.frame_rate,
                     gen.bins, int(rec["speaker_id"]),
                     style=turns.styles[turn],
                     title=f"{split} turn {turn}, speaker "
                           f"{int(rec['speaker_id'])}: \"{short}\"")
