"""Library side of ``python -m csm_jax.evaluate``: load, run a suite, report.

``evaluate(checkpoint, out_dir, suite)`` loads a CSM run or an export (its
tokenizer and codec included), the instruments of the corpus it was
trained on (trained once and cached, see ``csm_jax.eval.instruments``),
runs the suite and writes the report. ``experiment1`` is the separate
voice-semantic coupling experiment (``csm_jax.eval.experiment1``),
``experiment3`` the emotional-dynamics comparison of the prosody stream
(``csm_jax.eval.experiment3``).
"""

from __future__ import annotations

import json
import os
import sys

from csm_jax.eval import report
from csm_jax.eval import suite as suite_lib
from csm_jax.eval.instruments import plugged


def evaluate(checkpoint: str, out_dir: str, suite: str = "quick",
             compare: str | None = None, seed: int = 0,
             n_prompts: int | None = None, step: int | None = None,
             out=sys.stdout, instrument_overrides: dict | None = None,
             recognizer: str = plugged.CORPUS,
             speaker_model: str = plugged.CORPUS) -> dict:
  """Runs ``suite`` on ``checkpoint`` (at ``step``, default the latest);
  writes out_dir/report.{json,md}. ``instrument_overrides`` are recipe
  overrides for the instruments (``ensure_instruments``), e.g. tiny ones in
  tests; ``recognizer`` and ``speaker_model`` plug in other instruments
  (``instruments.plugged``: a model directory, or "resemblyzer")."""
  if suite not in suite_lib.SUITES:
    raise suite_lib.EvaluationError(
        f"--suite: unknown suite {suite!r}; known: "
        f"{', '.join(suite_lib.SUITES)} (and experiment1, experiment3)")
  # A wrong model directory is refused before minutes of loading.
  plugged.check(recognizer, speaker_model)
  gen = suite_lib.load(checkpoint, "--checkpoint", step)
  other = suite_lib.load(compare, "--compare") if compare else None
  # Checked before minutes of scoring: paired figures need one codec.
  if other is not None and other.codec.fingerprint() != gen.codec.fingerprint():
    raise suite_lib.EvaluationError(
        f"--compare: {compare} speaks with another codec than {checkpoint}; "
        "paired figures need the same one")
  instruments = plugged.select_instruments(
      gen.config, recognizer, speaker_model, overrides=instrument_overrides)
  result = suite_lib.run(gen, instruments, suite, seed=seed,
                         compare_gen=other, n_prompts=n_prompts)
  data = report.write(result, out_dir, checkpoint, instruments.validity)
  print(suite_lib.headline(result), file=out)
  print(f"report: {os.path.join(out_dir, 'report.md')}", file=out)
  return data


def headline_json(data: dict) -> str:
  rows = {k: {m: data["rows"][k][m] for m in ("cer", "speaker_similarity",
                                             "end_of_speech_rate",
                                             "ended_in_time")
              if m in data["rows"][k]}
          for k in data["rows"]}
  return json.dumps(rows, indent=1)
