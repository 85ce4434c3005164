"""The pieces behind the fault suite, in-process: the error boundary's
lines and exit codes, the workdir lock, metrics rewriting on resume, the
free-space check and the wav's mode."""

import errno
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf

from csm_jax.config import errors
from csm_jax.config.schema import ConfigError
from tests.faults import harness


@pytest.fixture(autouse=True)
def _restore_hooks(monkeypatch):
  """``guard`` installs its hooks for the rest of a command's process;
  each test here gets the previous ones back."""
  import threading
  for name in ("excepthook", "unraisablehook"):
    monkeypatch.setattr(sys, name, getattr(sys, name))
  monkeypatch.setattr(threading, "excepthook", threading.excepthook)
  monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)
  monkeypatch.setattr(errors, "_reported", type(errors._reported)())  # pylint: disable=protected-access
  with warnings.catch_warnings():  # and the warning filters there were
    yield


def _guard(exc):
  def boom():
    raise exc
  return errors.guard(boom)


@pytest.mark.parametrize("exc,code,line", [
    (ConfigError("train.steps", "must be positive"), 1,
     "error: config.train.steps: must be positive"),
    (errors.UsageError("give --text"), 2, "error: give --text"),
    (OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl"), 1,
     "error: no space left on device (/w/metrics.jsonl)"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "out"), 1,
     "error: is a directory (out)"),
    (PermissionError(errno.EACCES, "Permission denied", "/x", None, "/y"), 1,
     "error: permission denied (/x -> /y)"),
    (json.JSONDecodeError("Expecting value", "x", 0), 1,
     "error: invalid JSON: Expecting value: line 1 column 1 (char 0)"),
    (KeyboardInterrupt(), 130, "error: interrupted"),
])
def test_the_boundary_prints_one_line(exc, code, line, capsys):
  assert _guard(exc) == code
  err = capsys.readouterr().err
  assert err.strip() == line and "Traceback" not in err


def test_a_bug_shows_its_stack_then_one_line(capsys):
  assert _guard(TypeError("unsupported operand")) == 1
  err = capsys.readouterr().err
  assert "Traceback" in err
  assert err.strip().splitlines()[-1] == (
      "error: internal error: TypeError: unsupported operand (a bug: the "
      "stack is above)")


def test_a_user_error_raised_from_another_keeps_its_message(capsys):
  try:
    try:
      raise ValueError("low level")
    except ValueError as e:
      raise ConfigError("data.corpus", "unknown corpus 'x'") from e
  except ConfigError as e:
    assert _guard(e) == 1
  assert capsys.readouterr().err.strip() == (
      "error: config.data.corpus: unknown corpus 'x'")


def test_config_error_survives_ml_collections_reraise():
  # ml_collections' config_flags re-raises a config file's error as
  # type(e)("Error whilst parsing config file:\n\n" + traceback).
  trace = ("Error whilst parsing config file:\n\nTraceback (most recent call "
           "last):\n  File \"x.py\", line 1\ncsm_jax.config.schema."
           "ConfigError: config.train.stepz: unknown field\n")
  e = ConfigError(trace)
  assert str(e) == "config.train.stepz: unknown field"
  assert e.field == "train.stepz"


def test_keep_rows_until_drops_replayed_and_torn_rows(tmp_path):
  from csm_jax.training.reporting import keep_rows_until
  p = tmp_path / "metrics.jsonl"
  rows = [{"step": s, "loss": float(s)} for s in (1, 2, 3, 4)]
  p.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo')
  keep_rows_until(str(p), 2)
  assert [json.loads(l)["step"] for l in p.read_text().splitlines()] == [1, 2]


def test_the_lock_names_its_holder_and_nests(tmp_path):
  from csm_jax.store import lock
  wd = str(tmp_path / "run")
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time\n"
       "from csm_jax.store import lock\n"
       "with lock.hold(sys.argv[1]):\n"
       "  print('held', flush=True)\n"
       "  time.sleep(120)\n", wd],
      cwd=harness.ROOT, env=harness.env(), stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(lock.WorkdirLocked, match=f"pid {holder.pid} on host"):
      with lock.hold(wd):
        pass
  finally:
    holder.kill()
    holder.wait()
  # The holder is gone: the lock is free again; a directory inside a held
  # one (a CSM run's codec run) runs under the same lock.
  with lock.hold(wd):
    with lock.hold(os.path.join(wd, "codec")):
      assert not os.path.exists(os.path.join(wd, "codec", "lock"))
    content = json.load(open(os.path.join(wd, "lock")))
    assert content["pid"] == os.getpid()
  assert open(os.path.join(wd, "lock")).read() == ""


def test_free_space_is_checked_before_a_save(tmp_path):
  from csm_jax.store.checkpoint import SaveFailed, Saver

  class Manager:
    directory = str(tmp_path)

  saver = Saver(Manager())
  saver.check_space(3, 1024)  # a kilobyte fits
  with pytest.raises(SaveFailed, match="not enough space to save checkpoint "
                     "7: it needs about"):
    saver.check_space(7, 2**62)


def test_wavs_follow_the_umask(tmp_path):
  from csm_jax.audio.io import write_wav
  old = os.umask(0o027)
  try:
    write_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 8000)
  finally:
    os.umask(old)
  assert os.stat(tmp_path / "a.wav").st_mode & 0o777 == 0o640
  assert sf.info(tmp_path / "a.wav").frames == 100


def test_a_background_threads_disk_error_is_one_warning_line(capsys):
  import threading

  def main():
    def write():
      raise OSError(errno.ENOSPC, "No space left on device", "/w/tb/events")
    t = threading.Thread(target=write, name="writer")
    t.start()
    t.join()
  assert errors.guard(main) == 0
  err = capsys.readouterr().err
  assert err.strip() == ("warning: in thread writer: no space left on device "
                         "(/w/tb/events)")


def test_library_errors_lose_their_stacks():
  import logging
  from csm_jax.cli.logs import _LibraryInfoFilter  # pylint: disable=protected-access
  f = _LibraryInfoFilter()

  def record(path, level, exc=True):
    try:
      raise ValueError("inner")
    except ValueError:
      import sys as _sys
      info = _sys.exc_info() if exc else None
    return logging.LogRecord("x", level, path, 1, "msg", (), info)

  orbax = record("/v/orbax/checkpoint/x.py", logging.ERROR)
  assert f.filter(orbax) and orbax.exc_info is None
  assert not f.filter(record("/v/orbax/checkpoint/x.py", logging.INFO))
  assert not f.filter(record("/usr/lib/asyncio/base_events.py",
                             logging.ERROR))
  ours = record("/w/csm_jax/training/trainer.py", logging.INFO)
  assert f.filter(ours) and ours.exc_info is not None


class _RaisesWhenCollected:
  def __init__(self, exc):
    self.exc = exc

  def __del__(self):
    raise self.exc


def test_errors_libraries_ignore_are_one_line_or_none(capsys):
  """TensorStore prints a callback's error from its thread (PyErr_Print,
  i.e. ``sys.excepthook``) and a collected coroutine's through
  ``sys.unraisablehook``: teardown noise is dropped, anything else is one
  warning line, and nothing follows the command's error line."""
  import threading

  def callback():
    for exc in (RuntimeError("Event loop is closed"),
                OSError(errno.ENOSPC, "No space left on device", "/w/x")):
      try:
        raise exc
      except Exception:  # pylint: disable=broad-except
        sys.excepthook(*sys.exc_info())

  def main():
    t = threading.Thread(target=callback)
    t.start()
    t.join()
    try:
      raise GeneratorExit
    except GeneratorExit as e:
      wrapped = Exception("Encountered error while reading array index")
      wrapped.__cause__ = e
    _RaisesWhenCollected(wrapped)
    _RaisesWhenCollected(ValueError("boom"))
    raise errors.UserError("bad")

  assert errors.guard(main) == 1
  _RaisesWhenCollected(ValueError("after the error line"))
  err = capsys.readouterr().err
  assert err.strip().splitlines() == [
      "warning: ignored in a library callback: no space left on device "
      "(/w/x)",
      "warning: ignored while cleaning up: ValueError: boom",
      "error: bad"], err


def test_the_projects_warnings_are_one_line(capsys, recwarn):
  def main():
    warnings.warn_explicit("context trimmed: dropped the 2 oldest of 3 "
                           "turns", UserWarning,
                           "/site/csm_jax/inference/generator.py", 230)
    warnings.warn_explicit("a library's own", DeprecationWarning,
                           "/site/somelib/x.py", 7)
  assert errors.guard(main) == 0
  assert capsys.readouterr().err.splitlines() == [
      "warning: context trimmed: dropped the 2 oldest of 3 turns"]
  # A library's warning goes to the handler there was (here pytest's).
  assert [str(w.message) for w in recwarn] == ["a library's own"]


def test_unawaited_coroutines_of_an_abandoned_restore_are_dropped(capsys,
                                                                  recwarn):
  """A failed restore leaves Orbax's pending reads as coroutines that
  Python warns about as it collects them at exit, after the error line."""
  def main():
    raise errors.UserError("checkpoint 10 could not be restored")
  assert errors.guard(main) == 1
  warnings.warn_explicit("coroutine '_read_array_index_and_device_put' was "
                         "never awaited", RuntimeWarning, "sys", 1)
  warnings.warn_explicit("a library's own", RuntimeWarning, "/site/lib.py", 3)
  assert capsys.readouterr().err.splitlines() == [
      "error: checkpoint 10 could not be restored"]
  assert [str(w.message) for w in recwarn] == ["a library's own"]
