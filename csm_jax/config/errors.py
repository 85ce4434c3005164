"""Errors a user can fix, and the one line a command line reports them with.

Every typed error of the project (``ConfigError``, ``WorkdirError``,
``CheckpointError``, ``AudioError``, ...) derives from ``UserError``: its
message says what went wrong and names the file or field. ``one_line``
turns such an error, or an OS or JSON error a user can cause, into the one
line a command prints (``error: <what>: <why> (<file or field>)``, e.g.
``error: no space left on device (runs/x/metrics.jsonl)``); ``guard`` is
the boundary a command line's main runs behind. Errors libraries print
as they ignore them (a cancelled read's callback, from their own threads)
become one warning line, or none when they are teardown noise or come
after the command's error line, which stays the last. It lives in the lowest
layer so that the codec's command line (inside its package) and
``csm_jax.cli`` (which wires it to absl for every other entrypoint) share
one set of rules.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import traceback
import warnings
from typing import Callable

# Set to 1 to see the stack of an error (as ``--traceback`` does).
DEBUG_ENV = "CSM_JAX_DEBUG"
MAX_CHARS = 600  # a message quoting a whole input is cut to this


class UserError(Exception):
  """A problem with the user's input, files or machine, not a bug.

  The message names the file or field; the command lines print it as one
  line and exit with ``exit_code``.
  """

  exit_code = 1


class UsageError(UserError):
  """Wrong command-line flags or arguments (exit code 2, as for bad flags)."""

  exit_code = 2


def debug_requested() -> bool:
  return os.environ.get(DEBUG_ENV, "").strip().lower() not in (
      "", "0", "false", "no")


def _flat(text: str) -> str:
  text = " ".join(part.strip() for part in str(text).splitlines()
                  if part.strip())
  return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3] + "..."


_OS_WHY = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "not a directory",
    errno.EEXIST: "already exists",
}


def _os_line(e: OSError) -> str:
  if e.errno is None or not e.filename:
    # Raised by our own code with a message that already names the file.
    return _flat(str(e) or type(e).__name__)
  why = _OS_WHY.get(e.errno, (e.strerror or str(e)).lower())
  where = os.fspath(e.filename)
  if getattr(e, "filename2", None):
    where += f" -> {os.fspath(e.filename2)}"
  return f"{why} ({where})"


def _device_memory(e: BaseException) -> str | None:
  # XLA reports out-of-memory as a runtime error whose text starts with
  # RESOURCE_EXHAUSTED; matched by name so this layer imports no JAX.
  if type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError") and \
      "RESOURCE_EXHAUSTED" in str(e):
    first = str(e).strip().splitlines()[0]
    return _flat(f"out of device memory: {first} (lower data.batch_size, "
                 "raise train.accum_steps or set model.remat=full)")
  return None


def cause_chain(e: BaseException, implicit: bool = False):
  """``e`` and the errors it was raised ``from``, outermost first.

  ``implicit`` also follows errors raised while handling another (absl
  recasts a flag parser's error that way, losing its type).
  """
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or (e.__context__ if implicit else None)


def user_error(e: BaseException, implicit: bool = False) -> UserError | None:
  """The ``UserError`` that ``e`` is or was raised from, if any."""
  for err in cause_chain(e, implicit):
    if isinstance(err, UserError):
      return err
  return None


def one_line(e: BaseException, implicit: bool = False) -> str | None:
  """The one-line message for ``e`` (without "error: "), or None for a bug."""
  err = user_error(e, implicit)
  if err is not None:
    return _flat(str(err)) or type(err).__name__
  if isinstance(e, OSError):
    return _os_line(e)
  if isinstance(e, json.JSONDecodeError):
    return _flat(f"invalid JSON: {e}")
  if isinstance(e, UnicodeDecodeError):
    return _flat(f"not UTF-8 text: {e}")
  return _device_memory(e)


_reported = threading.Event()  # the command has printed its error line


def print_error(message: str) -> None:
  _reported.set()
  print(f"error: {message}", file=sys.stderr, flush=True)


def _cleanup_noise(e: BaseException | None) -> bool:
  """Errors of work a library abandoned, printed as it is torn down.

  When one of Orbax's parallel reads fails, the others are cancelled and
  the asyncio loop is closed; TensorStore's callbacks for reads still in
  flight then fail with "Event loop is closed" or a GeneratorExit, and are
  printed with their stacks from TensorStore's threads.
  """
  for err in cause_chain(e, implicit=True):
    if isinstance(err, (GeneratorExit, StopAsyncIteration)) or \
        type(err).__name__ == "CancelledError":
      return True
    if isinstance(err, RuntimeError) and "Event loop is closed" in str(err):
      return True
  return False


def _ignored(e: BaseException | None, where: str) -> None:
  """An error a library ignored (printed through ``sys.unraisablehook``
  or ``PyErr_Print``): one warning line, or nothing for cleanup noise and
  once the command has printed its own error (that line stays the last)."""
  if e is None or _cleanup_noise(e) or _reported.is_set():
    return
  message = one_line(e) or f"{type(e).__name__}: {_flat(str(e))}"
  print(f"warning: ignored {where}: {message}", file=sys.stderr, flush=True)


def _unraisable_hook(u) -> None:
  if debug_requested():
    sys.__unraisablehook__(u)
    return
  _ignored(u.exc_value, "while cleaning up")


def _except_hook(exc_type, value, tb) -> None:
  # Behind ``guard`` the command's own errors never get here: what does is
  # a library callback's error that C code printed (``PyErr_Print``).
  if debug_requested():
    sys.__excepthook__(exc_type, value, tb)
  elif _cleanup_noise(value) or _reported.is_set():
    return
  elif threading.current_thread() is threading.main_thread():
    sys.__excepthook__(exc_type, value, tb)  # uncaught outside guard: a bug
  else:
    _ignored(value, "in a library callback")


def _thread_hook(args) -> None:
  """A library thread's user-caused error (a writer on a full disk) as one
  warning line; the main thread reports what it means for the run."""
  message = one_line(args.exc_value) if args.exc_value is not None else None
  if message is None or debug_requested():
    threading.__excepthook__(args)
    return
  name = args.thread.name if args.thread is not None else "?"
  print(f"warning: in thread {name}: {message}", file=sys.stderr, flush=True)


_show_warning = warnings.showwarning


def _warning_line(message, category, filename, lineno, file=None,
                  line=None):
  """The project's own warnings (context trimmed, ...) as one line each;
  a library's keep Python's format (file, line and source)."""
  if debug_requested() or f"{os.sep}csm_jax{os.sep}" not in filename:
    _show_warning(message, category, filename, lineno, file, line)
    return
  print(f"warning: {_flat(str(message))}", file=file or sys.stderr,
        flush=True)


def guard(fn: Callable[..., int | None], *args,
          show_stack: bool = False) -> int:
  """Runs ``fn(*args)``; a user's error is one line on stderr and exit 1.

  ``show_stack`` (or ``CSM_JAX_DEBUG=1``) also prints the stack. An error
  that is no user's (a bug) prints its stack, then the same one line.
  Returns the exit code.
  """
  threading.excepthook = _thread_hook
  sys.unraisablehook = _unraisable_hook
  sys.excepthook = _except_hook
  global _show_warning
  if warnings.showwarning is not _warning_line:
    _show_warning = warnings.showwarning  # a library's warnings still go there
  warnings.showwarning = _warning_line
  if not debug_requested():
    # When one of Orbax's parallel reads fails, the reads not yet started
    # are dropped as coroutines, which Python warns of as it collects them,
    # often at exit, after the error line. A filter, unlike a display hook,
    # still holds while the interpreter shuts down.
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"coroutine .* was never awaited")
  try:
    code = fn(*args)
    return 0 if code is None else int(code)
  except KeyboardInterrupt:
    print_error("interrupted")
    return 130
  except SystemExit:
    raise
  except Exception as e:  # pylint: disable=broad-except
    message = one_line(e)
    if message is None or show_stack or debug_requested():
      traceback.print_exc(file=sys.stderr)
    if message is None:
      message = (f"internal error: {type(e).__name__}: {_flat(str(e))} "
                 "(a bug: the stack is above)")
    print_error(message)
    err = user_error(e)
    return err.exit_code if err is not None else 1


def define_traceback_flag():
  """Defines ``--traceback`` once per process; returns a reader of it.

  The codec's command line and ``csm_jax.cli`` both offer the flag; a test
  importing both must not define it twice.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  if "traceback" not in flags.FLAGS:
    flags.DEFINE_bool("traceback", False, "On an error, also print its "
                      f"stack (as {DEBUG_ENV}=1 does).")
  return lambda: bool(flags.FLAGS["traceback"].value)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing with a bad flag or config override as one line.

  Exits 2 on an error (absl prints two lines and a config file's error
  arrives as a traceback in the text).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    error, message = e, flag_error_line(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections applies ``--config.a.b=v`` overrides while parsing and
    # raises the ConfigDict's own error for an unknown or mistyped field.
    inner = e  # AttributeError(KeyError(text)) for an unknown field
    while inner.args and isinstance(inner.args[0], BaseException):
      inner = inner.args[0]
    text = (inner.args[0] if inner.args and isinstance(inner.args[0], str)
            else str(inner))
    given = [a for a in argv[1:] if a.startswith("--") and
             "." in a.split("=", 1)[0]]
    error, message = e, (f"bad config override: {_flat(text)} "
                         f"({' '.join(given) or 'see --help'})")
  if debug_requested() or "--traceback" in argv:
    traceback.print_exception(error, file=sys.stderr)
  print_error(message)
  sys.exit(UsageError.exit_code)


def flag_error_line(e: BaseException) -> str:
  """One line for a flag error; a config field's error names the field."""
  message = one_line(e, implicit=True)
  if message is None:
    lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
    if not lines:
      message = type(e).__name__
    elif len(lines) == 1:
      message = _flat(lines[0])
    else:
      # A config file's own error: the flag, then the traceback's last line.
      message = _flat(lines[0].split(": Error whilst")[0] + ": " + lines[-1])
  return f"{message} (see --help)"
