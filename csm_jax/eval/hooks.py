"""Evaluation during training, through the trainer's hooks.

``QuickSuiteHook`` is an ``EvalHook`` (``csm_jax.training.trainer``): every
``every`` steps it builds a generator from the model being trained (its
codec and tokenizer come from the CSM task), runs the quick suite on a few
held-out prompts and returns the headline figures, which the trainer logs
to TensorBoard and metrics.jsonl under ``eval/suite/...``. The trainer
never imports this layer; the train command hands the hook in.
"""

from __future__ import annotations

import os

from flax import nnx

from csm_jax.eval import report
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.inference.generator import Generator


class QuickSuiteHook:
  """Quick suite on ``n_prompts`` held-out prompts every ``every`` steps."""

  def __init__(self, config, task, every: int, n_prompts: int = 6,
               write_report: bool = True):
    self.config, self.task = config, task
    self.every, self.n_prompts = every, n_prompts
    self.write_report = write_report
    self._instruments = None

  def __call__(self, model, step: int, reporter, workdir: str) -> dict:
    if self.task.codec is None or self.task.tokenizer is None:
      return {}
    if self._instruments is None:
      self._instruments = ensure_instruments(self.config)
    graphdef, params = nnx.split(model)
    gen = Generator(self.config, graphdef, params, self.task.tokenizer,
                    self.task.codec)
    result = suite_lib.run(gen, self._instruments, "quick",
                           n_prompts=self.n_prompts,
                           progress=lambda *a, **k: None)
    if self.write_report:
      report.write(result, os.path.join(workdir, "eval", f"step_{step}"),
                   workdir, self._instruments.validity)
    s = result.summary["model"]
    return {f"suite/{m}": s[m].value for m in
            ("cer", "wer", "speaker_similarity", "end_of_speech_rate",
             "emotion_agreement", "duration_ratio", "ended_in_time")}
