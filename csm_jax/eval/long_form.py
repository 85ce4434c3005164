"""A long response scored per third: does it drift, skip or repeat?

The research plan's success criterion is a 30-second conversational
response. One speaker is given the texts of several held-out turns as one
response (about 30 s at their ground-truth pace, or as much as the model's
cache leaves after the prompt, ``Generator.cache_len``, whose conversation
is given as context only while it leaves that); the generation is cut into
three equal parts, and each part is transcribed and scored for CER against
the best-matching stretch of the reference text and for similarity to the
speaker's voice.
"""

from __future__ import annotations

import numpy as np

from csm_jax.config import text_stream
from csm_jax.eval import text_metrics
from csm_jax.eval.generation import context_turns
from csm_jax.eval.conversation import _voice_references
from csm_jax.inference import aligned

TARGET_SECONDS = 30.0


def best_substring_edits(ref: str, hyp: str) -> int:
  """Fewest edits turning ``hyp`` into some contiguous stretch of ``ref``.

  Semi-global alignment: the stretch may start and end anywhere in ref.
  """
  if not hyp:
    return 0
  codes = np.frombuffer(ref.encode("utf-32-le"), np.uint32)
  prev = np.zeros(len(ref) + 1, np.int64)   # any start in ref is free
  for i, h in enumerate(hyp, 1):
    cur = np.empty_like(prev)
    cur[0] = i
    match = prev[:-1] + (codes != ord(h))
    # insertion (extra hyp char) from prev[j]; then deletions run along j.
    cur[1:] = np.minimum(match, prev[1:] + 1)
    for j in range(1, len(cur)):
      if cur[j - 1] + 1 < cur[j]:
        cur[j] = cur[j - 1] + 1
    prev = cur
  return int(prev.min())


def _prompt_rows(gen, text, speaker, context) -> int:
  """Rows before the response's first frame. On the aligned stream the text
  is laid on the frames as they come, so only its tag rows precede them."""
  m = gen.config.model
  if not text_stream.aligned(m):
    return len(gen.prompt_rows(text, speaker, context,
                               reserve=0)["positions"])
  first = np.zeros((1 + text_stream.lookahead(m),), np.int32)
  return len(aligned.prompt_rows(gen, first, speaker, context,
                                 reserve=0)["positions"])


def _fitting_context(gen, text, speaker, context):
  """(context, response seconds it leaves, prompt rows): the most of the
  newest context turns that still leave ``TARGET_SECONDS``, else none
  (which leaves the most)."""
  best = None
  for k in range(len(context), -1, -1):
    kept = context[len(context) - k:]
    rows = _prompt_rows(gen, text, speaker, context_turns(kept))
    fits = max(0.0, (gen.cache_len - rows) * gen.frame_seconds)
    if best is None or fits > best[1]:
      best = (kept, fits, rows)
    if fits >= TARGET_SECONDS:
      break
  return best


def long_form(gen, instruments, prompts, sampling) -> dict:
  sr = gen.codec.sample_rate
  speaker = prompts[0].target.speaker
  mine = [p for p in prompts if p.target.speaker == speaker] or prompts
  texts, seconds = [], 0.0
  for p in mine + [q for q in prompts if q not in mine]:
    if seconds >= TARGET_SECONDS:
      break
    texts.append(p.target.text)
    seconds += len(p.target.audio) / sr
  text = " ".join(texts)
  # The trained length bounds prompt + response: the prompt's conversation
  # is given as context only while it leaves the response its length.
  context, fits, prompt_rows = _fitting_context(gen, text, speaker,
                                                prompts[0].context)
  cap = min(TARGET_SECONDS, seconds * 1.5, fits)
  if cap < 3.0:
    return {"skipped": f"the model's {gen.cache_len} rows leave "
                       f"{fits:.1f} s after a {prompt_rows}-row prompt"}
  import dataclasses  # pylint: disable=g-import-not-at-top
  r = gen.generate(text, speaker, context_turns(context),
                   dataclasses.replace(sampling, max_seconds=cap))
  audio = np.clip(r["audio"], -1, 1).astype(np.float32)
  ref_norm = text_metrics.normalize(text)
  refs = _voice_references(instruments, prompts, sr)
  parts = np.array_split(audio, 3) if len(audio) >= 3 * sr // 2 else []
  thirds = []
  for part in parts:
    hyp = text_metrics.normalize(instruments.transcribe([part], sr)[0])
    edits = best_substring_edits(ref_norm, hyp)
    e = instruments.speaker_embeddings([part], sr)[0]
    thirds.append({"seconds": len(part) / sr, "transcript": hyp,
                   "cer_vs_best_stretch": edits / max(len(hyp), 1),  # per hyp char
                   "speaker_similarity": float(np.dot(e, refs[speaker]))
                   if speaker in refs else float("nan")})
  return {"target_seconds": TARGET_SECONDS, "cap_seconds": cap,
          "context_turns": len(context),
          "generated_seconds": len(audio) / sr, "ended_on_eos": r["eos"],
          "reference_text": text, "thirds": thirds, "audio": audio}
