"""The CPU peak that MFU divides by is the best this machine has measured:
a measurement taken beside another process cannot push MFU past 100%."""

import json

from csm_jax.parallel.hardware import best_seen_peak


def test_a_low_measurement_keeps_the_best_seen(tmp_path):
  record = str(tmp_path / "peaks.json")
  assert best_seen_peak(2.0e11, "cpu:2", record) == 2.0e11
  # Measured while the cores were shared: half the peak.
  assert best_seen_peak(1.0e11, "cpu:2", record) == 2.0e11
  # A better measurement is the new best; other keys are separate.
  assert best_seen_peak(2.5e11, "cpu:2", record) == 2.5e11
  assert best_seen_peak(1.0e11, "cpu:16", record) == 1.0e11
  assert json.load(open(record)) == {"cpu:2": 2.5e11, "cpu:16": 1.0e11}


def test_an_unreadable_record_only_loses_the_memory(tmp_path):
  bad = tmp_path / "peaks.json"
  bad.write_text("not json")
  assert best_seen_peak(1.5e11, "cpu:2", str(bad)) == 1.5e11
  assert json.load(open(bad)) == {"cpu:2": 1.5e11}
  # A record under a file (a path that cannot be a directory) is skipped.
  blocked = tmp_path / "file"
  blocked.write_text("")
  assert best_seen_peak(1.0e11, "cpu:2", str(blocked / "peaks.json")) == 1.0e11
