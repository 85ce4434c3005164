"""Train any task: ``python -m csm_jax.train --config=configs/debug.py --workdir=DIR``.

Resumes from the last checkpoint in --workdir. Override config fields on the
command line, e.g. ``--config.train.steps=50 --config.data.batch_size=4``.
A CSM trained on dialogues ends with the quick evaluation suite
(``--final_suite=quick``, report in WORKDIR/eval/quick) and prints its
headline: CER, speaker similarity and end-of-speech rate for the ground
truth, the codec's resynthesis and the model. ``--suite_every=N`` also runs
it on a few prompts every N steps and logs it to TensorBoard.
"""

from absl import flags, logging
from ml_collections import config_flags

from csm_jax.cli import errors as cli_errors
from csm_jax.parallel.hardware import tune_cpu_for_training
from csm_jax.parallel.mesh import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/debug.py (optionally "
    "configs/debug.py:field=value,...).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard events and "
    "metrics.jsonl; an existing run there is resumed.")
_FINAL_SUITE = flags.DEFINE_enum(
    "final_suite", "quick", ["quick", "full", "none"],
    "Evaluation suite to run when a CSM dialogue run finishes.")
_SUITE_EVERY = flags.DEFINE_integer(
    "suite_every", 0, "Run the quick suite on 6 prompts every N steps "
    "(0: never); figures go to TensorBoard as eval/suite/*.")
flags.mark_flags_as_required(["config", "workdir"])


def _speaks(config) -> bool:
  return config.task == "csm" and config.data.source == "dialogues"


def main(argv):
  del argv
  tune_cpu_for_training()  # XLA reads its flags at backend start
  initialize_distributed()  # before anything queries the backend
  # pylint: disable=g-import-not-at-top
  from csm_jax.cli.logs import quiet_library_logs
  from csm_jax.training.run import train_and_evaluate
  quiet_library_logs()
  config, workdir = _CONFIG.value, _WORKDIR.value
  factory = None
  if _SUITE_EVERY.value and _speaks(config):
    from csm_jax.eval.hooks import QuickSuiteHook
    factory = lambda task: [QuickSuiteHook(config, task, _SUITE_EVERY.value)]
  result = train_and_evaluate(config, workdir, hook_factory=factory)
  logging.info("finished at step %d", result["step"])
  if _FINAL_SUITE.value != "none" and _speaks(config):
    import os
    from csm_jax.eval.evaluate import evaluate
    print(f"Evaluating the run ({_FINAL_SUITE.value} suite).", flush=True)
    evaluate(workdir, os.path.join(workdir, "eval", _FINAL_SUITE.value),
             _FINAL_SUITE.value)


if __name__ == "__main__":
  cli_errors.run(main)
