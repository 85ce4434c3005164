"""Voice identity over a long generated conversation.

Two speakers of a held-out conversation take ten or more turns; every turn
is generated with the earlier generated turns as its context (the model
hears only itself after the first two ground-truth turns). Each turn's
speaker embedding is compared with that speaker's ground-truth voice (the
mean embedding of their held-out turns), so drift shows as similarity
falling with the turn index.
"""

from __future__ import annotations

import numpy as np

from csm_jax.eval import stats
from csm_jax.eval.generation import speak_conversation


def _voice_references(instruments, prompts, sample_rate) -> dict:
  by_speaker: dict[int, list] = {}
  for p in prompts:
    by_speaker.setdefault(p.target.speaker, []).append(p.target.audio)
  refs = {}
  for s, audios in by_speaker.items():
    m = instruments.speaker_embeddings(audios, sample_rate).mean(axis=0)
    refs[s] = m / max(np.linalg.norm(m), 1e-9)
  return refs


def conversation_script(prompts, n_turns: int):
  """(first two ground-truth turns, [(speaker, text, cap seconds)] * n)."""
  for p in prompts:
    turns = p.context + [p.target]
    speakers = list(dict.fromkeys(t.speaker for t in turns))
    if len(speakers) >= 2:
      break
  else:
    return None, []
  a, b = speakers[:2]
  seed_turns = [next(t for t in turns if t.speaker == s) for s in (a, b)]
  texts = [q.target.text for q in prompts]
  script = []
  for k in range(n_turns):
    text = texts[k % len(texts)]
    script.append(((a, b)[k % 2], text, min(10.0, 0.12 * len(text) + 2.0)))
  return seed_turns, script


def identity_over_turns(gen, instruments, prompts, n_turns: int,
                        sampling) -> dict:
  sr = gen.codec.sample_rate
  seed_turns, script = conversation_script(prompts, n_turns)
  if not script:
    return {"skipped": "no held-out conversation has two speakers"}
  refs = _voice_references(instruments, prompts, sr)
  audios = speak_conversation(gen, script, sampling, context=seed_turns)
  sims, seconds = [], []
  for (speaker, _, _), a in zip(script, audios):
    seconds.append(len(a) / sr)
    if not len(a) or speaker not in refs:
      sims.append(float("nan"))
      continue
    e = instruments.speaker_embeddings([a], sr)[0]
    sims.append(float(np.dot(e, refs[speaker])))
  x = np.arange(len(sims), dtype=float)
  ok = np.isfinite(sims)
  slope = (float(np.polyfit(x[ok], np.asarray(sims)[ok], 1)[0])
           if ok.sum() >= 3 else float("nan"))
  return {"turns": len(script), "speakers": sorted({s for s, _, _ in script}),
          "similarity_per_turn": sims, "seconds_per_turn": seconds,
          "mean": stats.mean(sims).to_json(),
          "slope_per_turn": slope, "audio": audios}
