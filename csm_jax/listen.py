"""The listening test of Experiment 3: ``python -m csm_jax.listen COMMAND``.

Commands:
  pairs    builds a pairs folder from two folders of same-named wavs (ours
           and the baseline or ground truth), plus optional context turns;
           NAME.txt beside a wav gives its transcript.
  serve    runs the web app: each rater gets a short training page, then
           every pair in random order with random A/B sides, trap pairs
           (identical audio) mixed in; answers go to a SQLite database.
  analyze  reports preference (exact binomial test), mean CMOS with
           bootstrap intervals, Wilcoxon tests, flagged raters and how many
           judgments a 60% preference needs: report.json, report.md and
           scores.png in --out.

Example:
  python -m csm_jax.listen pairs --ours=gen/ --baseline=gt/ \\
      --context=prev/ --out=exp3 --baseline_name=ground_truth
  python -m csm_jax.listen serve --pairs=exp3 --db=exp3.sqlite \\
      --host=0.0.0.0 --port=8765
  python -m csm_jax.listen analyze --db=exp3.sqlite --out=exp3_report

Format, protocol and statistics: docs/listening.md.
"""

from __future__ import annotations

import os
import signal
import sys

from absl import flags

from csm_jax.cli import errors as cli_errors

COMMANDS = ("serve", "pairs", "analyze")

_PAIRS = flags.DEFINE_string("pairs", None, "serve: the pairs folder (holds "
                             "pairs.json)")
_DB = flags.DEFINE_string("db", None, "serve: answers database (default "
                          "PAIRS/answers.sqlite); analyze: the database to "
                          "read")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "serve: address to listen "
                            "on; 0.0.0.0 for raters on other machines")
_PORT = flags.DEFINE_integer("port", 8765, "serve: port (0: any free one)")
_MAX_ITEMS = flags.DEFINE_integer("max_items", None, "serve: at most this "
                                  "many items per condition and session, "
                                  "drawn at random (default: all)")
_OURS = flags.DEFINE_string("ours", None, "pairs: folder of our system's "
                            "wavs")
_BASELINE = flags.DEFINE_string("baseline", None, "pairs: folder of the "
                                "baseline's (or ground truth) wavs")
_CONTEXT = flags.DEFINE_string("context", None, "pairs: folder of the "
                               "previous turns, same file names (optional)")
_OUT = flags.DEFINE_string("out", None, "pairs: new pairs folder; analyze: "
                           "report folder (default DB_FOLDER/report)")
_NAME = flags.DEFINE_string("name", None, "pairs: name of the test (default "
                            "the --out folder's name)")
_SYSTEM_NAME = flags.DEFINE_string("system_name", "ours", "pairs: label of "
                                   "our system in reports")
_BASELINE_NAME = flags.DEFINE_string("baseline_name", "baseline", "pairs: "
                                     "label of the other side, e.g. "
                                     "ground_truth")
_TRAP_THRESHOLD = flags.DEFINE_float("trap_threshold", 2.0, "analyze: flag a "
                                     "rater whose mean |score| on trap pairs "
                                     "reaches this")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 2000, "analyze: bootstrap "
                                  "resamples")
_SEED = flags.DEFINE_integer("seed", 0, "analyze: bootstrap seed")


class _Usage(Exception):
  pass


def _need(command: str, **given) -> None:
  missing = [f"--{k}" for k, v in given.items() if not v]
  if missing:
    raise _Usage(f"{command} needs {' and '.join(missing)} (see --help)")


def _pairs() -> None:
  # pylint: disable-next=g-import-not-at-top
  from csm_jax.eval.listening import pairs
  _need("pairs", ours=_OURS.value, baseline=_BASELINE.value, out=_OUT.value)
  ps = pairs.build_pairs(_OURS.value, _BASELINE.value, _OUT.value,
                         _CONTEXT.value, name=_NAME.value,
                         system=_SYSTEM_NAME.value,
                         baseline_name=_BASELINE_NAME.value)
  print(f"wrote {os.path.join(_OUT.value, 'pairs.json')}: {len(ps.items)} "
        f"pairs of {ps.system} vs {ps.baseline}, conditions "
        f"{', '.join(ps.conditions)}")


def _interrupt(signum, frame):
  del signum, frame
  # A service manager's stop ends the server the way Ctrl-C does.
  raise KeyboardInterrupt


def _serve() -> None:
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.listening import pairs, server, store
  _need("serve", pairs=_PAIRS.value)
  if _MAX_ITEMS.value is not None and _MAX_ITEMS.value < 1:
    raise _Usage(f"--max_items must be at least 1, got {_MAX_ITEMS.value}")
  ps = pairs.load_pairs(_PAIRS.value)
  db = _DB.value or os.path.join(_PAIRS.value, "answers.sqlite")
  st = store.Store(db, {"name": ps.name, "system": ps.system,
                        "baseline": ps.baseline})
  the_app = server.App(ps, st, _MAX_ITEMS.value)
  try:
    httpd = server.make_server(the_app, _HOST.value, _PORT.value)
  except (OSError, OverflowError) as e:
    st.close()
    raise _Usage(f"cannot listen on {_HOST.value}:{_PORT.value} "
                 f"({getattr(e, 'strerror', None) or e})") from None
  host, port = httpd.server_address[:2]
  signal.signal(signal.SIGTERM, _interrupt)
  # Started in the background by a non-interactive shell (or by a parent
  # that ignores Ctrl-C) the process inherits SIGINT ignored, and Python
  # then installs no KeyboardInterrupt: Ctrl-C or kill -INT would not stop
  # the server.
  signal.signal(signal.SIGINT, _interrupt)
  try:
    print(f"test {ps.name!r}: {len(ps.items)} items, "
          f"{the_app.info()['trials']} trials per session "
          f"({', '.join(ps.conditions)}; {ps.traps} trap(s) per condition)")
    print(f"answers -> {db}")
    print(f"open http://{host}:{port}/   (Ctrl-C stops)", flush=True)
    httpd.serve_forever()
  except KeyboardInterrupt:
    print("stopped")
  finally:
    httpd.server_close()
    st.close()


def _analyze() -> None:
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.listening import ListeningError, store
  _need("analyze", db=_DB.value)
  rows, meta = store.read_answers(_DB.value)
  if not rows:
    raise ListeningError(f"{_DB.value}: the database holds no answers yet")
  # After the checks: scipy and matplotlib take a while to import.
  from csm_jax.eval.listening import report
  rep = report.build_report(rows, meta, trap_threshold=_TRAP_THRESHOLD.value,
                            reps=_BOOTSTRAP.value, seed=_SEED.value)
  out = _OUT.value or os.path.join(
      os.path.dirname(os.path.abspath(_DB.value)), "report")
  paths = report.write_report(rep, out)
  print(report.summary(rep))
  print(f"wrote {paths['md']}, {paths['json']}, {paths['png']}")


def main(argv):
  # pylint: disable-next=g-import-not-at-top
  from csm_jax.eval.listening import ListeningError
  args = argv[1:]
  if len(args) != 1 or args[0] not in COMMANDS:
    got = " ".join(args) or "nothing"
    print(f"error: expected one command of {', '.join(COMMANDS)}, got {got} "
          "(see --help)", file=sys.stderr)
    return 2
  try:
    {"serve": _serve, "pairs": _pairs, "analyze": _analyze}[args[0]]()
  except (ListeningError, _Usage) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  except OSError as e:
    where = f"{e.filename}: " if e.filename else ""
    print(f"error: {where}{e.strerror or e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  cli_errors.run(main)
