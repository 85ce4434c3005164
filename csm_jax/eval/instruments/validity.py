"""How far the instruments can be trusted: measured on held-out ground truth.

The validation split (whole conversations the instruments never trained
on) is run through the public ``Instruments`` calls, from its audio, as any
generated speech would be: the recognizer's CER/WER against the corpus
transcripts (with the character model, the default, and greedy), the speaker encoder's EER over every pair of validation turns,
and the emotion classifier's accuracy and confusion matrix against the
corpus labels, beside chance (1 / classes) and the majority-class share.
``markdown`` renders the result for reports. ``recognizer_figures`` and
``speaker_figures`` measure one instrument alone, as ``plugged`` does for
a recognizer or speaker encoder plugged in from outside.
"""

from __future__ import annotations

import numpy as np

from csm_jax.data.corpora import registry
from csm_jax.eval import text_metrics
from csm_jax.eval.instruments import charlm
from csm_jax.eval.instruments import scoring

# Bump when what ``measure`` reports changes: caches measured by an older
# version are measured again (without training).
VERSION = 2


def validation_records(config):
  """(audios, sample rate, texts, speaker ids, emotion ids) of the
  validation split: the ground truth every instrument is measured on."""
  src = registry.source(config, "validation")
  audios, texts, speakers, emotions = [], [], [], []
  rate = None
  for i in range(len(src)):
    rec = src[i]
    rate = rate or int(rec.get("sample_rate", 16000))
    audios.append(registry.record_audio(rec, rate))
    t = rec.get("text", "")
    texts.append(t.decode("utf-8") if isinstance(t, bytes) else str(t))
    speakers.append(int(rec.get("speaker_id", -1)))
    emotions.append(int(rec.get("emotion", -1)))
  return audios, rate, texts, np.asarray(speakers), np.asarray(emotions)


def recognizer_figures(transcribe, audios, rate: int, texts,
                       suffix: str = "") -> tuple[dict, list[str]]:
  """(CER/WER of ``transcribe(audios, rate)`` against ``texts``, keys
  ending in ``suffix``; the transcripts)."""
  hyps = transcribe(audios, rate)
  ce, cl = text_metrics.edit_counts(texts, hyps, "char")
  we, wl = text_metrics.edit_counts(texts, hyps, "word")
  return {f"cer{suffix}": sum(ce) / max(sum(cl), 1),
          f"wer{suffix}": sum(we) / max(sum(wl), 1),
          "n_utterances": len(texts), "n_chars": int(sum(cl)),
          "n_words": int(sum(wl))}, hyps


def speaker_figures(embed, audios, rate: int, speakers
                    ) -> tuple[dict, np.ndarray, np.ndarray]:
  """(EER of the embeddings ``embed(audios, rate)`` over every pair of
  turns with a known speaker; the trial scores and same-speaker flags)."""
  speakers = np.asarray(speakers)
  keep = speakers >= 0
  emb = embed([a for a, k in zip(audios, keep) if k], rate)
  scores, same = scoring.trials(emb, speakers[keep])
  if not (same.any() and (~same).any()):
    return {"eer": None, "n_trials": int(len(scores)),
            "note": "the validation split has no same- and "
                    "different-speaker pairs to score"}, scores, same
  rate_eer, thr = scoring.eer(scores, same)
  return {"eer": rate_eer, "threshold": thr, "n_trials": int(len(scores)),
          "n_same": int(same.sum()), "n_utterances": int(keep.sum()),
          "n_speakers": int(len(set(speakers[keep].tolist()))),
          "mean_same": float(scores[same].mean()),
          "mean_different": float(scores[~same].mean())}, scores, same


def measure(inst, config, fingerprint: str) -> tuple[dict, dict]:
  """(validity, details): the JSON-serializable figures, and the raw
  transcripts, trial scores and predictions the plots are drawn from."""
  audios, rate, texts, speakers, emotions = validation_records(config)
  rec, hyps = recognizer_figures(
      lambda a, r: inst.transcribe(a, r, decoder="lm"), audios, rate, texts)
  greedy, _ = recognizer_figures(
      lambda a, r: inst.transcribe(a, r, decoder="greedy"), audios, rate,
      texts, suffix="_greedy")
  rec.update(cer_greedy=greedy["cer_greedy"], wer_greedy=greedy["wer_greedy"],
             decoder=charlm.describe() if inst.lm is not None else "greedy")
  validity = {"corpus": fingerprint, "split": "validation", "recognizer": rec}
  details = {"texts": texts, "hyps": hyps}
  validity["speaker"], scores, same = speaker_figures(
      inst.speaker_embeddings, audios, rate, speakers)
  details.update(scores=scores, same=same)

  names = list(inst.emotion_names)
  keep = (emotions >= 0) & (emotions < len(names))
  probs = inst.emotion_probs([a for a, k in zip(audios, keep) if k], rate)
  pred, true = probs.argmax(1), emotions[keep]
  conf = scoring.confusion(true, pred, len(names))
  n = int(keep.sum())
  validity["emotion"] = {
      "accuracy": float((pred == true).mean()) if n else None,
      "chance": 1.0 / len(names),
      "majority": float(np.bincount(true, minlength=len(names)).max() / n)
      if n else None,
      "confusion": conf.tolist(), "names": names, "n": n}
  return validity, details


def _pct(x) -> str:
  return "n/a" if x is None else f"{100 * x:.1f}%"


def _name(figures: dict, default: str) -> str:
  """The instrument's name in a table: the corpus-trained one's, or the
  plugged-in model's (``plugged``), which says what it is."""
  plugged = figures.get("instrument")
  return f"{default}: {plugged}" if plugged else default


def summary(v: dict) -> str:
  """One line: the headline figure of each instrument."""
  r, s, e = v["recognizer"], v["speaker"], v["emotion"]
  greedy = (f" (greedy {_pct(r.get('cer_greedy'))}, "
            f"{_pct(r.get('wer_greedy'))})" if "cer_greedy" in r else "")
  return (f"instruments on held-out ground truth: {_name(r, 'recognizer')} "
          f"CER {_pct(r['cer'])}, WER {_pct(r['wer'])}{greedy} "
          f"({r['n_utterances']} turns); {_name(s, 'speaker encoder')} EER "
          f"{_pct(s.get('eer'))} ({s['n_trials']} trials); emotion accuracy "
          f"{_pct(e['accuracy'])} (chance {_pct(e['chance'])}, majority "
          f"{_pct(e['majority'])}, {e['n']} turns)")


def markdown(v: dict) -> str:
  """A section for report.md: the table of validity figures."""
  r, s, e = v["recognizer"], v["speaker"], v["emotion"]
  rec = _name(r, "recognizer")
  lines = [
      "## Instruments: validity on held-out ground truth",
      "",
      f"Corpus {v['corpus']}, {v.get('split', 'validation')} split "
      "(conversations no instrument trained on). Recognizer decoding: "
      f"{r.get('decoder', 'greedy')}.",
      "",
      "| instrument | measure | value | on |",
      "|---|---|---|---|",
      f"| {rec} | CER | {_pct(r['cer'])} | {r['n_utterances']} turns |",
      f"| {rec} | WER | {_pct(r['wer'])} | {r['n_utterances']} turns |",
  ]
  if "cer_greedy" in r:
    lines.append(
        f"| {rec}, greedy (no character model) | CER / WER | "
        f"{_pct(r.get('cer_greedy'))} / {_pct(r.get('wer_greedy'))} | "
        f"{r['n_utterances']} turns |")
  lines += [
      f"| {_name(s, 'speaker encoder')} | EER | {_pct(s.get('eer'))} | "
      f"{s['n_trials']} pairs of turns |",
      f"| emotion classifier | accuracy | {_pct(e['accuracy'])} (chance "
      f"{_pct(e['chance'])}, majority class {_pct(e['majority'])}) | "
      f"{e['n']} turns |",
  ]
  return "\n".join(lines) + "\n"
