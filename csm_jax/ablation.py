"""An ablation's table and plot: ``python -m csm_jax.ablation``.

  python -m csm_jax.ablation --arm=aligned=runs/a/eval/quick \\
      --arm=prefix=runs/p/eval/quick --out=ablation.png

Each ``--arm`` names an arm and the directory of its quick-suite report
(``python -m csm_jax.evaluate --suite=quick``, with ``--compare`` for a
paired CER difference); ``DIR#compare_model`` takes the report's
``--compare`` run as the arm. Prints a markdown table of the model row and its
teacher-forced ceiling and draws them as bars with 95% intervals
(``csm_jax.eval.ablation``).
"""

from absl import app, flags

from csm_jax.cli import errors as cli_errors
from csm_jax.eval import ablation

_ARMS = flags.DEFINE_multi_string(
    "arm", [], "NAME=DIR: an arm's name and its quick-suite report directory "
    "(repeat, in the order to show)")
_OUT = flags.DEFINE_string("out", "ablation.png", "The plot to write.")
_TITLE = flags.DEFINE_string("title", "", "The plot's title.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  arms = ablation.read_arms(_ARMS.value)
  if not arms:
    raise app.UsageError("give at least one --arm=NAME=REPORT_DIR")
  print(ablation.table(arms))
  ablation.plot(arms, _OUT.value, _TITLE.value)
  print(f"plot: {_OUT.value}")


if __name__ == "__main__":
  cli_errors.run(main)
