"""The error boundary every entrypoint's main runs behind.

``run(main)`` is ``absl.app.run(main)`` with ``csm_jax.config.errors``'
rules: a typed error of the project, an OS or JSON error a user can cause,
a bad flag or config override, or ``app.UsageError`` prints one line,
``error: <what>: <why> (<file or field>)``, on stderr and exits non-zero
(2 for usage, 1 otherwise, 130 on Ctrl-C). ``--traceback`` or
``CSM_JAX_DEBUG=1`` also prints the stack; an error that is no user's (a
bug) always does.
"""

from __future__ import annotations

from typing import Callable

from absl import app

from csm_jax.config import errors

traceback_requested = errors.define_traceback_flag()


class CommandError(errors.UserError):
  """An entrypoint's own check failed; the message names the flag or file."""


def _config_file_error(e: BaseException) -> OSError | None:
  """ml_collections' stand-in error for a config file that did not load.

  A missing or broken ``--config`` file is reported only when the config
  is first read, as an IOError whose text holds the loader's traceback.
  """
  if isinstance(e, OSError) and str(e).startswith(
      "Configuration is not available because of an earlier failure"):
    cause = e.__cause__ or e
    lines = [l.strip() for l in str(cause).splitlines() if l.strip()]
    # The loader's own text ("Failed loading config file config_config")
    # names its module, not the file; the traceback's last line says why.
    why = lines[-1] if len(lines) > 1 else "see --traceback"
    return OSError(f"cannot load the --config file: {why}")
  return None


def _call(main: Callable[[list[str]], int | None], argv: list[str]):
  try:
    return main(argv)
  except app.UsageError as e:
    raise errors.UsageError(f"{e} (see --help)") from None
  except OSError as e:
    replaced = _config_file_error(e)
    if replaced is None:
      raise
    raise CommandError(str(replaced)) from e


def guarded_main(main: Callable[[list[str]], int | None]):
  """``main`` behind the boundary: returns the exit code instead of raising."""
  def wrapped(argv: list[str]) -> int:
    return errors.guard(_call, main, argv, show_stack=traceback_requested())
  return wrapped


def run(main: Callable[[list[str]], int | None]) -> None:
  """``app.run(main)`` behind the error boundary (see the module docstring)."""
  app.run(guarded_main(main), flags_parser=errors.parse_flags)
