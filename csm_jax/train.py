"""Train any task: ``python -m csm_jax.train --config=configs/debug.py --workdir=DIR``.

Resumes from the last checkpoint in --workdir. Override config fields on the
command line, e.g. ``--config.train.steps=50 --config.data.batch_size=4``.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from csm_jax.parallel.mesh import initialize_distributed

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, e.g. configs/debug.py (optionally "
    "configs/debug.py:field=value,...).", lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Directory for checkpoints, TensorBoard events and "
    "metrics.jsonl; an existing run there is resumed.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  initialize_distributed()  # before anything queries the backend
  # pylint: disable=g-import-not-at-top
  from csm_jax.cli.logs import quiet_library_logs
  from csm_jax.training.run import train_and_evaluate
  quiet_library_logs()
  result = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("finished at step %d", result["step"])


if __name__ == "__main__":
  app.run(main)
