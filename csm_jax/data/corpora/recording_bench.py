"""Long recordings with known turns, assembled from the embedded corpus,
and the measures of how well ``recordings`` recovers them.

``assemble`` lays a synthesized conversation's turns on one track (as
``Conversation.mixdown`` does), optionally starting some turns before the
previous one ends (overlapping speech), under a music bed (slow chords) and
noise, after a music-only intro that no transcript covers. The truth is
every turn's speaker, text and speech extent (its audio's first and last
sample above -60 dBFS).

``measure`` compares a recording's alignment report entry with the truth:
the median error of the turn boundaries (each true turn against the kept
turn whose speech overlaps it most), the share of speech time whose
speaker is right (over true speech covered by kept turns, with predicted
speakers mapped to true ones by overlap), the coverage, and the share of
words aligned.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from csm_jax.data.synthetic import dialogues

_SILENCE = 1e-3


@dataclasses.dataclass
class Assembled:
  audio: np.ndarray             # float32 mono
  sample_rate: int
  truth: list[dict]             # speaker, text, start, end (speech extent)

  def transcript(self, tagged: bool = True) -> str:
    if tagged:
      return "\n".join(f"{t['speaker']}: {t['text']}" for t in self.truth)
    return " ".join(t["text"] for t in self.truth) + "\n"


def _music(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
  """Slow triads (a new chord every 2 s, soft attack and release)."""
  out = np.zeros(n, np.float32)
  chord_len = 2 * sr
  t = np.arange(chord_len) / sr
  env = np.minimum(1.0, np.minimum(t / 0.2, (t[::-1]) / 0.3)).astype(
      np.float32)
  for s in range(0, n, chord_len):
    root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
    tone = sum(np.sin(2 * np.pi * root * r * t + rng.uniform(0, 6.3))
               for r in (1.0, 1.26, 1.5, 2.0))
    piece = (tone * env / 4).astype(np.float32)
    out[s:s + chord_len] += piece[:n - s]
  return out


def _rms(x: np.ndarray) -> float:
  return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


def assemble(conv: dialogues.Conversation, seed: int = 0,
             overlap_every: int = 0, overlap_s: float = 0.4,
             music_db: float | None = -20.0, snr_db: float | None = 25.0,
             intro_s: float = 2.0) -> Assembled:
  """One long track of ``conv`` (see module doc).

  Every ``overlap_every``-th turn (0: none) starts ``overlap_s`` before
  the previous one ends; the others keep the conversation's pauses.
  ``music_db``/``snr_db`` set the music bed and the white noise relative
  to the speech's RMS (None: leave out).
  """
  rng = np.random.default_rng(seed)
  sr = conv.turns[0].sample_rate
  starts, clock = [], intro_s
  for i, t in enumerate(conv.turns):
    if i:
      prev = conv.turns[i - 1]
      gap = t.start_s - prev.end_s
      if overlap_every and i % overlap_every == 0:
        gap = -overlap_s
      clock += gap
    starts.append(clock)
    clock += t.audio.size / sr
  n = int((clock + 1.0) * sr)
  speech = np.zeros(n, np.float32)
  truth = []
  for t, s in zip(conv.turns, starts):
    x = t.audio.astype(np.float32) / 32768.0
    a = int(round(s * sr))
    speech[a:a + x.size] += x[:n - a]
    loud = np.flatnonzero(np.abs(x) > _SILENCE)
    truth.append({"speaker": t.speaker_name, "text": t.text,
                  "start": s + loud[0] / sr, "end": s + (loud[-1] + 1) / sr})
  out = mix_background(speech, sr, rng, music_db, snr_db)
  return Assembled(out, sr, truth)


def mix_background(speech: np.ndarray, sr: int, rng: np.random.Generator,
                   music_db: float | None, snr_db: float | None
                   ) -> np.ndarray:
  """``speech`` under a music bed and white noise, each ``music_db`` /
  ``-snr_db`` relative to the speech's RMS (None: leave it out); scaled
  down if the mix would peak above 0.95."""
  x = np.asarray(speech, np.float32)
  level = _rms(x[x != 0]) if np.any(x) else 0.1
  out = x.copy()
  if music_db is not None:
    m = _music(x.size, sr, rng)
    out += m * np.float32(level * 10 ** (music_db / 20) / _rms(m))
  if snr_db is not None:
    out += rng.standard_normal(x.size).astype(np.float32) * np.float32(
        level * 10 ** (-snr_db / 20))
  peak = float(np.max(np.abs(out)))
  if peak > 0.95:
    out *= 0.95 / peak
  return out.astype(np.float32)


def _overlap(a0, a1, b0, b1) -> float:
  return max(0.0, min(a1, b1) - max(a0, b0))


def measure(entry: dict, truth: list[dict], step: float = 0.01) -> dict:
  """Boundary error, speaker attribution, coverage and aligned share of
  one recording's report entry against its truth (see module doc)."""
  kept = [t for t in entry["turns"] if t["kept"]]
  errors, matched = [], 0
  for tr in truth:
    best = max(kept, default=None, key=lambda k: _overlap(
        k["speech_start"], k["speech_end"], tr["start"], tr["end"]))
    if best is None or _overlap(best["speech_start"], best["speech_end"],
                                tr["start"], tr["end"]) <= 0:
      continue
    matched += 1
    errors += [abs(best["speech_start"] - tr["start"]),
               abs(best["speech_end"] - tr["end"])]
  # Predicted speaker names mapped to true ones by shared speech time.
  share: dict[tuple[str, str], float] = {}
  for k in kept:
    for tr in truth:
      o = _overlap(k["speech_start"], k["speech_end"], tr["start"],
                   tr["end"])
      if o > 0:
        share[(k["speaker"], tr["speaker"])] = share.get(
            (k["speaker"], tr["speaker"]), 0.0) + o
  mapping, used = {}, set()
  for (p, t), _ in sorted(share.items(), key=lambda kv: -kv[1]):
    if p not in mapping and t not in used:
      mapping[p] = t
      used.add(t)
  end = max(max(t["end"] for t in truth), max(
      (k["speech_end"] for k in kept), default=0.0))
  grid = np.arange(0.0, end, step) + step / 2
  true_spk = [set() for _ in grid]
  for tr in truth:
    for i in np.flatnonzero((grid >= tr["start"]) & (grid < tr["end"])):
      true_spk[i].add(tr["speaker"])
  pred = [None] * len(grid)
  for k in kept:
    for i in np.flatnonzero((grid >= k["speech_start"])
                            & (grid < k["speech_end"])):
      if pred[i] is None:
        pred[i] = mapping.get(k["speaker"], "?")
  speech = [i for i, s in enumerate(true_spk) if s]
  covered = [i for i in speech if pred[i] is not None]
  right = sum(pred[i] in true_spk[i] for i in covered)
  return {
      "boundary_error_median_s": float(np.median(errors)) if errors else
      float("nan"),
      "boundary_errors_s": [round(e, 3) for e in errors],
      "turns_matched": matched,
      "turns_true": len(truth),
      "speaker_attribution": right / max(len(covered), 1),
      "coverage": len(covered) / max(len(speech), 1),
      "aligned_share": entry["aligned_words"] / max(entry["words"], 1)}
