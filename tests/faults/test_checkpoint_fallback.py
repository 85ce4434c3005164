"""A corrupt newest checkpoint: training resumes from the previous one (the
bad one set aside), generation reads the previous one; when none restores,
one line and nothing moved. A read-only workdir (by mode or mount): one
line, nothing written."""

import glob
import os
import subprocess

import pytest

from tests.faults import harness


def _corrupt(workdir, step):
  """Cuts every array file of checkpoint ``step`` short (a torn write)."""
  files = [f for f in glob.glob(os.path.join(
      workdir, "checkpoints", str(step), "state", "**", "*"), recursive=True)
           if os.path.isfile(f) and "ocdbt.process" in f]
  assert files
  for f in files:
    with open(f, "r+b") as fh:
      fh.truncate(max(os.path.getsize(f) // 3, 1))


# In-process: TensorStore's callbacks for the reads cancelled by the first
# failure report "Event loop is closed" as unraisable (the command lines
# drop that noise, config.errors).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_params_reads_the_previous_checkpoint(reference, tmp_path):
  from csm_jax.store.restore import RestoreError, restore_params
  wd = harness.copy_run(reference[0], str(tmp_path / "run"))
  _corrupt(wd, harness.STEPS)
  r = restore_params(wd)
  assert r.step == harness.STEPS - 2
  with pytest.raises(RestoreError, match=f"checkpoint {harness.STEPS} "):
    restore_params(wd, step=harness.STEPS)


def test_training_falls_back_to_the_previous_checkpoint(reference, tmp_path):
  ref_wd, ref = reference
  wd = harness.copy_run(ref_wd, str(tmp_path / "run"))
  bad = harness.STEPS
  _corrupt(wd, bad)
  r = harness.train(wd)
  harness.ok(r)
  aside = os.path.join(wd, "corrupt_checkpoints", str(bad))
  assert f"checkpoint {bad} cannot be restored; moved it to {aside}" in r.stderr
  assert os.path.isdir(aside)
  # Steps 9 and 10 were trained again from step 8: the same losses, and
  # one row per step in metrics.jsonl.
  harness.assert_same_losses(wd, ref)
  assert harness.committed(wd)[-1] == bad


def test_no_restorable_checkpoint_is_one_line_and_moves_nothing(reference,
                                                                tmp_path):
  wd = harness.copy_run(reference[0], str(tmp_path / "run"))
  for step in harness.committed(wd):
    _corrupt(wd, step)
  r = harness.train(wd)
  harness.one_error_line(r, 1, f"checkpoint {wd}/checkpoints/{harness.STEPS}",
                         "could not be restored")
  assert harness.committed(wd) == [harness.STEPS - 2, harness.STEPS]
  assert not os.path.exists(os.path.join(wd, "corrupt_checkpoints"))


def _snapshot(root):
  return sorted((os.path.relpath(os.path.join(d, f), root),
                 os.path.getsize(os.path.join(d, f)))
                for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("existing", [False, True])
def test_a_read_only_workdir_is_one_line(reference, tmp_path, existing):
  """chmod a-w: refused by its mode, so also where the suite runs as root
  (whom permission bits do not stop). A new workdir inside a read-only
  directory and an existing run's workdir; nothing in it changes."""
  if existing:
    wd = where = harness.copy_run(reference[0], str(tmp_path / "run"))
  else:
    where = str(tmp_path / "ro")
    os.makedirs(where)
    wd = os.path.join(where, "run")
  before = _snapshot(where)
  os.chmod(where, 0o555)
  try:
    r = harness.train(wd)
  finally:
    os.chmod(where, 0o755)
  harness.one_error_line(r, 1, f"workdir {wd} is not writable",
                         "read-only mode 0555", f"({where})")
  assert _snapshot(where) == before


def test_a_read_only_file_system_is_one_line(tmp_path):
  mnt = str(tmp_path / "ro")
  os.makedirs(mnt)
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs",
                     mnt], capture_output=True).returncode != 0:
    pytest.skip("cannot mount a read-only tmpfs here (needs root); the "
                "read-only mode test covers the refusal")
  try:
    r = harness.train(os.path.join(mnt, "run"))
    harness.one_error_line(r, 1, f"workdir {mnt}/run is on a read-only "
                           f"file system ({mnt})")
  finally:
    subprocess.run(["umount", "-l", mnt], check=False)
