"""The evaluation suites: what ``python -m csm_jax.evaluate`` runs.

``quick``: a fixed set of held-out prompts said by the ground truth, the
codec's resynthesis, the codec's floor (a k-means mel RVQ with Griffin-Lim
at the same bit rate, ``eval.mel_rvq``) and the model, and scored on intelligibility, end of
speech, speaker and emotion consistency and prosodic continuity. ``full``
adds every held-out prompt, identity over a 10-turn generated conversation,
identity under the four adversarial contexts of the research plan (4.2),
and a long-form response scored per third. Every figure has a bootstrap
95% interval; ``compare`` adds paired differences against a second run.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable

import numpy as np

from csm_jax.config import text_stream
from csm_jax.config.errors import UserError
from csm_jax.eval import mel_rvq
from csm_jax.eval import metrics
from csm_jax.eval import stats
from csm_jax.eval.generation import resynthesize, speak_prompts
from csm_jax.eval.prompts import build_prompts
from csm_jax.eval.teacher_forced import ceiling_audio
from csm_jax.inference.generator import Sampling
from csm_jax.inference.loading import LoadError, load_generator

SUITES = {
    "quick": dict(prompts=12, conversation_turns=0, adversarial=False,
                  long_form=False),
    "full": dict(prompts=None, conversation_turns=10, adversarial=True,
                 long_form=True),
}
ROWS = ("ground_truth", "codec", "codec_floor", "teacher_forced", "model")


class EvaluationError(UserError, ValueError):
  """A run cannot be evaluated as asked (missing tokenizer/codec, a compare
  run with another codec, an unknown suite); names the thing."""


class Progress:
  """One line per step with elapsed time and an ETA from the steps' weights."""

  def __init__(self, steps: dict[str, float], out=sys.stderr):
    self.weights, self.out = steps, out
    self.total = sum(steps.values())
    self.done = 0.0
    self.t0 = time.perf_counter()

  def __call__(self, step: str, fraction: float = 1.0) -> None:
    if fraction >= 1.0:
      self.done += self.weights.get(step, 0.0)
    elapsed = time.perf_counter() - self.t0
    part = self.done + self.weights.get(step, 0.0) * (
        fraction if fraction < 1.0 else 0.0)
    eta = elapsed / part * (self.total - part) if part > 0 else float("nan")
    eta_s = f"{eta:5.0f} s" if np.isfinite(eta) else "    ?"
    print(f"[evaluate {elapsed:6.1f} s | ETA {eta_s}] {step}"
          f"{'' if fraction >= 1.0 else f' {100 * fraction:.0f}%'}",
          file=self.out, flush=True)


@dataclasses.dataclass
class SuiteResult:
  suite: str
  prompts: list
  rows: dict                 # name -> metrics.RowScores
  audio: dict                # name -> list of utterances (codec rate)
  summary: dict              # name -> {metric: stats.Estimate}
  sample_rate: int
  extras: dict               # section -> JSON-able results
  timings: dict
  emotion_names: tuple
  prosody: Any = None        # the instruments' prosody tracker, for plots
  compare: dict | None = None


def load(checkpoint: str, what: str = "--checkpoint",
         step: int | None = None):
  """The Generator of a run or export; a load failure names ``what``."""
  try:
    return load_generator(checkpoint, step=step)
  except LoadError as e:
    raise EvaluationError(f"{what}: {e}") from e


def default_sampling(seed: int = 0) -> Sampling:
  return Sampling(temperature=0.9, top_k=50, seed=seed, max_seconds=10.0,
                  frames_per_call=8)


# Above this many levels the floor's k-means fit takes longer than the
# suite itself (a Mimi-shaped 32 x 2048 codec); its row is left out.
FLOOR_MAX_LEVELS = 16


def with_floor(codec) -> bool:
  """Whether the report has the floor row for ``codec``."""
  return codec.levels <= FLOOR_MAX_LEVELS


def run(gen, instruments, suite: str = "quick", seed: int = 0,
        compare_gen=None, progress: Callable | None = None,
        n_prompts: int | None = None,
        conversation_turns: int | None = None) -> SuiteResult:
  """Runs ``suite`` for ``gen`` (a Generator) with ``instruments``;
  ``n_prompts`` and ``conversation_turns`` override the suite's."""
  if suite not in SUITES:
    raise EvaluationError(f"--suite: unknown suite {suite!r}; known: "
                          f"{', '.join(SUITES)}")
  spec = dict(SUITES[suite])
  if conversation_turns is not None and spec["conversation_turns"]:
    spec["conversation_turns"] = conversation_turns
  sr = gen.codec.sample_rate
  steps = {"prompts": 1, "ground truth": 2, "codec": 2, "teacher forced": 1,
           "model": 4}
  if with_floor(gen.codec):
    steps["codec floor"] = 2
  if compare_gen is not None:
    steps["compare model"] = 4
  if spec["conversation_turns"]:
    steps["conversation"] = 3
  if spec["long_form"]:
    steps["long form"] = 2
  prog = progress or Progress(steps)
  timings = {}
  t = time.perf_counter()
  n = spec["prompts"] if n_prompts is None else n_prompts
  prompts = build_prompts(gen.config, n, sr)
  prog("prompts")
  names = tuple(instruments.emotion_names)
  audio = {"ground_truth": [p.target.audio for p in prompts]}
  rows = {}
  rows["ground_truth"] = metrics.score_row(
      "ground_truth", instruments, prompts, audio["ground_truth"], sr)
  prog("ground truth")
  audio["codec"] = resynthesize(gen.codec, audio["ground_truth"])
  rows["codec"] = metrics.score_row("codec", instruments, prompts,
                                    audio["codec"], sr)
  prog("codec")
  if with_floor(gen.codec):
    # The floor at the codec's bit rate (eval.mel_rvq): what the codec's
    # row must beat to show its training learned anything.
    floor = mel_rvq.corpus_floor(gen.config, gen.codec,
                                 lambda m: prog(f"codec floor: {m}", 0.0))
    audio["codec_floor"] = resynthesize(floor, audio["ground_truth"])
    rows["codec_floor"] = metrics.score_row("codec_floor", instruments,
                                            prompts, audio["codec_floor"], sr)
    prog("codec floor")
  # The model's argmax codes given the true past (eval.teacher_forced):
  # its ceiling, next to free-running generation.
  audio["teacher_forced"] = ceiling_audio(gen, prompts)
  rows["teacher_forced"] = metrics.score_row(
      "teacher_forced", instruments, prompts, audio["teacher_forced"], sr)
  prog("teacher forced")
  sampling = default_sampling(seed)
  spoken = speak_prompts(
      gen, prompts, sampling,
      progress=lambda i, k: prog("model", i / k) if i < k else None)
  timings["model_generation_s"] = spoken.seconds
  timings["prompts_with_trimmed_context"] = spoken.trimmed
  audio["model"] = spoken.audios
  rows["model"] = metrics.score_row("model", instruments, prompts,
                                    spoken.audios, sr, eos=spoken.eos)
  prog("model")
  result = SuiteResult(suite, prompts, rows, audio,
                       {k: metrics.summarize(v, seed) for k, v in rows.items()},
                       sr, {}, timings, names, prosody=instruments.prosody)
  result.extras["missed_in_time"] = metrics.missed_in_time(
      rows["model"], prompts, names)
  result.extras["emotion_given"] = text_stream.emotion_tag(gen.config.model)
  if compare_gen is not None:
    if compare_gen.codec.fingerprint() != gen.codec.fingerprint():
      raise EvaluationError("--compare: the other run speaks with another "
                            "codec; paired figures need the same one")
    other = speak_prompts(compare_gen, prompts, sampling)
    audio["compare_model"] = other.audios
    rows["compare_model"] = metrics.score_row(
        "compare_model", instruments, prompts, other.audios, sr,
        eos=other.eos)
    result.summary["compare_model"] = metrics.summarize(
        rows["compare_model"], seed)
    result.compare = {k: v for k, v in metrics.compare(
        rows["model"], rows["compare_model"], seed).items()}
    prog("compare model")
  if spec["adversarial"]:
    result.extras["adversarial_identity"] = adversarial_identity(
        result, instruments)
  if spec["conversation_turns"]:
    from csm_jax.eval.conversation import identity_over_turns  # pylint: disable=g-import-not-at-top
    result.extras["identity_over_turns"] = identity_over_turns(
        gen, instruments, prompts, spec["conversation_turns"], sampling)
    prog("conversation")
  if spec["long_form"]:
    from csm_jax.eval.long_form import long_form  # pylint: disable=g-import-not-at-top
    result.extras["long_form"] = long_form(gen, instruments, prompts,
                                           sampling)
    prog("long form")
  timings["total_s"] = time.perf_counter() - t
  return result


def _speaker_references(result: SuiteResult, instruments) -> dict:
  """Speaker -> mean ground-truth embedding over the prompt set."""
  gt = result.rows["ground_truth"]
  refs: dict[int, list] = {}
  for p, e in zip(result.prompts, gt.embeddings):
    refs.setdefault(p.target.speaker, []).append(e)
  out = {}
  for s, es in refs.items():
    m = np.mean(es, axis=0)
    out[s] = m / max(np.linalg.norm(m), 1e-9)
  del instruments
  return out


def adversarial_identity(result: SuiteResult, instruments) -> dict[str, Any]:
  """Similarity of the model's utterances to their speaker's ground-truth
  voice, per conversational context (arc); the worst arc is the score."""
  refs = _speaker_references(result, instruments)
  model = result.rows["model"]
  per_arc: dict[str, list] = {}
  for p, e, a in zip(result.prompts, model.embeddings, result.audio["model"]):
    if len(a) and p.target.speaker in refs:
      per_arc.setdefault(p.arc or "unknown", []).append(
          float(np.dot(e, refs[p.target.speaker])))
  arcs = {k: stats.mean(v).to_json() for k, v in sorted(per_arc.items())}
  worst = min(arcs, key=lambda k: arcs[k]["value"]) if arcs else None
  return {"per_context": arcs, "worst_context": worst,
          "score": arcs[worst] if worst else None,
          "contexts_missing": [c for c in ("friendly_chat", "heated_argument",
                                           "technical_explanation",
                                           "emotional_confession")
                               if c not in arcs]}


def headline(result: SuiteResult) -> str:
  """CER, speaker similarity, end-of-speech rate and the share ended in
  time (on its end of speech, 0.7-1.4x the true duration), per row."""
  lines = ["row            CER                      speaker similarity       "
           "end of speech            ended in time"]
  for name in result.summary:
    s = result.summary[name]
    model = name.endswith("model")
    eos = str(s["end_of_speech_rate"]) if model else "-"
    timed = str(s["ended_in_time"]) if model and "ended_in_time" in s else "-"
    lines.append(f"{name:<14} {str(s['cer']):<24} "
                 f"{str(s['speaker_similarity']):<24} {eos:<24} {timed}")
  if result.extras.get("emotion_given"):
    lines.append(metrics.EMOTION_GIVEN)
  return "\n".join(lines)


def ensure_dir(path: str) -> str:
  os.makedirs(path, exist_ok=True)
  return path
