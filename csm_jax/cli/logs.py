"""Console logging for the command lines: our INFO lines, libraries' warnings.

Orbax, JAX and grain log many INFO lines per save or compile; a user of the
command line wants the project's own progress lines and every warning.
"""

from __future__ import annotations


class _LibraryInfoFilter:
  """Drops INFO chatter of libraries (Orbax logs every save step by step)."""

  _NOISY = ("/orbax/", "/jax/_src/", "/grain/", "/etils/")

  def filter(self, record) -> bool:
    import logging as pylogging  # pylint: disable=g-import-not-at-top
    if record.levelno >= pylogging.WARNING:
      return True
    return not any(p in record.pathname for p in self._NOISY)


def quiet_library_logs() -> None:
  """Keeps our INFO lines and library warnings; hides library INFO lines."""
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  absl_logging.set_verbosity(absl_logging.INFO)
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())
