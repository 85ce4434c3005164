"""Console logging for the command lines: our INFO lines, libraries' warnings.

Orbax, JAX and grain log many INFO lines per save or compile; a user of the
command line wants the project's own progress lines and every warning. A
library's error record keeps its one line but loses its stack (Orbax logs
a failed background save with a traceback from each of its threads; the
run then stops with its own one-line error), unless ``CSM_JAX_DEBUG=1``.
"""

from __future__ import annotations

# Imported here, not in ``filter``: records still arrive from library
# threads while the interpreter shuts down, when imports fail.
import logging as pylogging

from csm_jax.config.errors import debug_requested


class _LibraryInfoFilter:
  """Drops INFO chatter of libraries (Orbax logs every save step by step)."""

  _NOISY = ("/orbax/", "/jax/_src/", "/grain/", "/etils/")

  def __init__(self):
    self.debug = debug_requested()

  def filter(self, record) -> bool:
    if "/asyncio/" in record.pathname and not self.debug:
      # "Task exception was never retrieved": Orbax reads arrays in
      # parallel; when one fails, the others' errors (the same corrupt
      # file) are logged with their stacks as they are collected.
      return record.levelno < pylogging.ERROR
    if not any(p in record.pathname for p in self._NOISY):
      return True
    if record.levelno < pylogging.WARNING:
      return False
    if not self.debug:
      record.exc_info, record.exc_text, record.stack_info = None, None, None
    return True


def quiet_library_logs() -> None:
  """Keeps our INFO lines and library warnings; hides library INFO lines."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
