"""How far the instruments can be trusted: measured on held-out ground truth.

The validation split (whole conversations the instruments never trained
on) is run through the public ``Instruments`` calls, from its audio, as any
generated speech would be: the recognizer's CER/WER against the corpus
transcripts (with the character model, the default, and greedy), the speaker encoder's EER over every pair of validation turns,
and the emotion classifier's accuracy and confusion matrix against the
corpus labels, beside chance (1 / classes) and the majority-class share.
``markdown`` renders the result for reports.
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


def _records(config):
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


def measure(inst, config, fingerprint: str) -> tuple[dict, dict]:
  """(validity, details): the JSON-serializable figures, and the raw
  transcripts, trial scores and predictions the plots are drawn from."""
  audios, rate, texts, speakers, emotions = _records(config)
  rec = {}
  hyps = {}
  for decoder, suffix in (("lm", ""), ("greedy", "_greedy")):
    hyps[decoder] = inst.transcribe(audios, rate, decoder=decoder)
    ce, cl = text_metrics.edit_counts(texts, hyps[decoder], "char")
    we, wl = text_metrics.edit_counts(texts, hyps[decoder], "word")
    rec[f"cer{suffix}"] = sum(ce) / max(sum(cl), 1)
    rec[f"wer{suffix}"] = sum(we) / max(sum(wl), 1)
  rec.update(n_utterances=len(texts), n_chars=int(sum(cl)),
             n_words=int(sum(wl)),
             decoder=charlm.describe() if inst.lm is not None else "greedy")
  validity = {"corpus": fingerprint, "split": "validation", "recognizer": rec}
  details = {"texts": texts, "hyps": hyps["lm"]}

  keep = speakers >= 0
  emb = inst.speaker_embeddings([a for a, k in zip(audios, keep) if k], rate)
  scores, same = scoring.trials(emb, speakers[keep])
  if same.any() and (~same).any():
    rate_eer, thr = scoring.eer(scores, same)
    validity["speaker"] = {
        "eer": rate_eer, "threshold": thr, "n_trials": int(len(scores)),
        "n_same": int(same.sum()), "n_utterances": int(keep.sum()),
        "n_speakers": int(len(set(speakers[keep].tolist()))),
        "mean_same": float(scores[same].mean()),
        "mean_different": float(scores[~same].mean())}
  else:
    validity["speaker"] = {"eer": None, "n_trials": int(len(scores)),
                           "note": "the validation split has no same- and "
                                   "different-speaker pairs to score"}
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


def summary(v: dict) -> str:
  """One line: the headline figure of each instrument."""
  r, s, e = v["recognizer"], v["speaker"], v["emotion"]
  return (f"instruments on held-out ground truth: CER {_pct(r['cer'])}, "
          f"WER {_pct(r['wer'])} (greedy {_pct(r.get('cer_greedy'))}, "
          f"{_pct(r.get('wer_greedy'))}; {r['n_utterances']} turns); speaker EER "
          f"{_pct(s.get('eer'))} ({s['n_trials']} trials); emotion accuracy "
          f"{_pct(e['accuracy'])} (chance {_pct(e['chance'])}, majority "
          f"{_pct(e['majority'])}, {e['n']} turns)")


def markdown(v: dict) -> str:
  """A section for report.md: the table of validity figures."""
  r, s, e = v["recognizer"], v["speaker"], v["emotion"]
  lines = [
      "## Instruments: validity on held-out ground truth",
      "",
      f"Corpus {v['corpus']}, {v.get('split', 'validation')} split "
      "(conversations no instrument trained on). Recognizer decoding: "
      f"{r.get('decoder', 'greedy')}.",
      "",
      "| instrument | measure | value | on |",
      "|---|---|---|---|",
      f"| recognizer | CER | {_pct(r['cer'])} | {r['n_utterances']} turns |",
      f"| recognizer | WER | {_pct(r['wer'])} | {r['n_utterances']} turns |",
      f"| recognizer, greedy (no character model) | CER / WER | "
      f"{_pct(r.get('cer_greedy'))} / {_pct(r.get('wer_greedy'))} | "
      f"{r['n_utterances']} turns |",
      f"| speaker encoder | EER | {_pct(s.get('eer'))} | {s['n_trials']} "
      "pairs of turns |",
      f"| emotion classifier | accuracy | {_pct(e['accuracy'])} (chance "
      f"{_pct(e['chance'])}, majority class {_pct(e['majority'])}) | "
      f"{e['n']} turns |",
  ]
  return "\n".join(lines) + "\n"
