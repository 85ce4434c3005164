"""One picture per instrument, saved in its cache directory.

``recognizer.png``: the CTC loss per character over training, train and
held-out, with the final CER/WER. ``speaker_encoder.png``: histograms of
the cosine scores of same- and different-speaker pairs of validation turns,
with the EER threshold. ``emotion_classifier.png``: the confusion matrix on
validation turns.
"""

from __future__ import annotations

import json
import os

import numpy as np

from csm_jax.eval.instruments import recipes
from csm_jax.store import layout


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _curve(path: str, key: str):
  steps, values = [], []
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          row = json.loads(line)
        except json.JSONDecodeError:
          continue
        if key in row:
          steps.append(row["step"])
          values.append(row[key])
  return np.asarray(steps), np.asarray(values)


def recognizer(validity: dict, workdir: str, out: str) -> str:
  plt = _pyplot()
  metrics = os.path.join(workdir, layout.METRICS)
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  s, v = _curve(metrics, "ctc_per_char")
  ax.plot(s, v, label="train (60% augmented)")
  s, v = _curve(metrics, "eval/ctc_per_char")
  ax.plot(s, v, "o-", label="validation")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("CTC loss per character")
  r = validity["recognizer"]
  title = (f"recognizer on {r['n_utterances']} validation turns: CER "
           f"{100 * r['cer']:.1f}%, WER {100 * r['wer']:.1f}%")
  if r.get("cer_greedy") is not None:
    title += (f"\n(greedy, no character model: CER "
              f"{100 * r['cer_greedy']:.1f}%, WER {100 * r['wer_greedy']:.1f}%)")
  ax.set_title(title, fontsize=10)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def speaker(validity: dict, scores, same, out: str) -> str:
  plt = _pyplot()
  scores, same = np.asarray(scores), np.asarray(same, bool)
  fig, ax = plt.subplots(figsize=(6.4, 4.0))
  bins = np.linspace(min(-0.2, scores.min()) if scores.size else -1, 1, 60)
  ax.hist(scores[~same], bins=bins, alpha=0.6, density=True,
          label=f"different speaker ({int((~same).sum())} pairs)")
  ax.hist(scores[same], bins=bins, alpha=0.6, density=True,
          label=f"same speaker ({int(same.sum())} pairs)")
  s = validity["speaker"]
  if s.get("eer") is not None:
    ax.axvline(s["threshold"], color="k", ls="--",
               label=f"EER threshold {s['threshold']:.2f}")
    ax.set_title(f"speaker encoder: validation EER {100 * s['eer']:.1f}%")
  ax.set_xlabel("cosine similarity of two validation turns")
  ax.set_ylabel("density")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def emotion(validity: dict, out: str) -> str:
  plt = _pyplot()
  e = validity["emotion"]
  conf = np.asarray(e["confusion"])
  names = e["names"]
  fig, ax = plt.subplots(figsize=(5.6, 4.8))
  ax.imshow(conf, cmap="Blues")
  for i in range(conf.shape[0]):
    for j in range(conf.shape[1]):
      ax.text(j, i, str(conf[i, j]), ha="center", va="center",
              color="white" if conf[i, j] > conf.max() / 2 else "black")
  ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
  ax.set_yticks(range(len(names)), names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true (corpus label)")
  acc = e["accuracy"]
  ax.set_title(f"emotion: accuracy {100 * (acc or 0):.1f}% (chance "
               f"{100 * e['chance']:.1f}%, n={e['n']})")
  fig.tight_layout()
  fig.savefig(out, dpi=110)
  plt.close(fig)
  return out


def save_all(validity: dict, details: dict, directory: str) -> list[str]:
  """Writes the three PNGs into ``directory``; returns their paths."""
  return [
      recognizer(validity, os.path.join(directory, recipes.RECOGNIZER),
                 os.path.join(directory, f"{recipes.RECOGNIZER}.png")),
      speaker(validity, details["scores"], details["same"],
              os.path.join(directory, f"{recipes.SPEAKER}.png")),
      emotion(validity, os.path.join(directory, f"{recipes.EMOTION}.png")),
  ]
