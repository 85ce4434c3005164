"""``python -m csm_jax.listen`` as a user runs it: help, one-line errors, a
server process killed mid-test, and analyze on what it stored."""

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys

import pytest

from csm_jax.eval.listening import store
from tests.eval.test_listening_pairs import make_pairs, wav_dirs
from tests.eval.test_listening_server import db_answers, play_session

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def listen(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", "csm_jax.listen", *args],
                        cwd=ROOT, capture_output=True, text=True,
                        timeout=timeout)


def one_error_line(proc, *needles):
  assert proc.returncode != 0
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


def test_help_teaches_every_command():
  proc = listen("--help")
  # absl ends --help with exit status 1, like every entrypoint here.
  assert proc.returncode in (0, 1) and not proc.stderr
  for word in ("serve", "pairs", "analyze", "Example", "--baseline_name",
               "docs/listening.md"):
    assert word in proc.stdout


def test_unknown_or_missing_command():
  one_error_line(listen(), "expected one command")
  one_error_line(listen("listen"), "listen")
  one_error_line(listen("pairs", "--ours=x"), "--baseline", "--out")
  one_error_line(listen("serve"), "--pairs")
  one_error_line(listen("analyze"), "--db")


def test_pairs_then_serve_errors_name_the_file(tmp_path):
  dirs = wav_dirs(tmp_path, n=2, context=False)
  out = str(tmp_path / "pairs")
  proc = listen("pairs", f"--ours={dirs['ours']}",
                f"--baseline={dirs['baseline']}", f"--out={out}",
                "--baseline_name=ground_truth")
  assert proc.returncode == 0, proc.stderr
  assert "2 pairs of ours vs ground_truth" in proc.stdout
  one_error_line(listen("pairs", f"--ours={dirs['ours']}",
                        f"--baseline={dirs['baseline']}", f"--out={out}"),
                 "already exists")
  one_error_line(listen("serve", f"--pairs={tmp_path}/nowhere"), "nowhere")
  pairs_json = os.path.join(out, "pairs.json")
  with open(pairs_json) as f:
    doc = json.load(f)
  doc["items"][1]["baseline"] = "baseline/gone.wav"
  with open(pairs_json, "w") as f:
    json.dump(doc, f)
  one_error_line(listen("serve", f"--pairs={out}"), "gone.wav",
                 "items[1]", "baseline")
  with open(pairs_json, "w") as f:
    f.write('{"items": [}')
  one_error_line(listen("serve", f"--pairs={out}"), "pairs.json",
                 "not valid JSON")
  os.remove(pairs_json)
  one_error_line(listen("serve", f"--pairs={out}"), "pairs.json")


def test_analyze_errors(tmp_path):
  one_error_line(listen("analyze", f"--db={tmp_path}/none.sqlite"),
                 "none.sqlite")
  (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
  one_error_line(listen("analyze", f"--db={tmp_path}/junk.sqlite"),
                 "junk.sqlite")
  sqlite3.connect(tmp_path / "other.sqlite").execute(
      "CREATE TABLE t (x)").connection.close()
  one_error_line(listen("analyze", f"--db={tmp_path}/other.sqlite"),
                 "not a listening-test database")
  store.Store(str(tmp_path / "empty.sqlite"), {"name": "x"}).close()
  one_error_line(listen("analyze", f"--db={tmp_path}/empty.sqlite"),
                 "empty.sqlite", "no answers")


def test_killed_server_keeps_answers_and_analyze_reports(tmp_path):
  pairs_dir, _ = make_pairs(tmp_path, n=5)
  db = str(tmp_path / "answers.sqlite")
  proc = subprocess.Popen(
      [sys.executable, "-m", "csm_jax.listen", "serve", f"--pairs={pairs_dir}",
       f"--db={db}", "--port=0"], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  try:
    banner = [proc.stdout.readline() for _ in range(3)]
    m = re.search(r"open (http://[\d.]+:\d+)/", banner[2])
    assert m, banner
    assert "12 trials per session" in banner[0]
    # Ours on B always wins by 2: raw +2 when ours is B, -2 when A.
    sessions = [play_session(m.group(1), lambda i: 2)[0] for _ in range(3)]
    accepted = db_answers(db)
  finally:
    proc.send_signal(signal.SIGKILL)   # no clean shutdown, on purpose
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()
  assert db_answers(db) == accepted and len(accepted) == 36
  assert {r["session_id"] for r in accepted} == set(sessions)

  # A clean stop (Ctrl-C) says so and exits 0.
  proc = subprocess.Popen(
      [sys.executable, "-m", "csm_jax.listen", "serve", f"--pairs={pairs_dir}",
       f"--db={db}", "--port=0"], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  for _ in range(3):
    proc.stdout.readline()
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=20)
  assert proc.returncode == 0 and "stopped" in out and not err

  # Answering 2 on trap pairs too flags every rater at the default threshold.
  strict = listen("analyze", f"--db={db}", f"--out={tmp_path}/strict",
                  "--bootstrap=200")
  assert strict.returncode == 0, strict.stderr
  assert "raters 3 (3 flagged)" in strict.stdout
  with open(os.path.join(tmp_path, "strict", "report.md")) as f:
    assert "No answers left to analyse" in f.read()
  report_dir = str(tmp_path / "report")
  done = listen("analyze", f"--db={db}", f"--out={report_dir}",
                "--bootstrap=200", "--trap_threshold=2.5")
  assert done.returncode == 0, done.stderr
  assert "overall" in done.stdout and "106" in done.stdout
  assert "raters 3 (0 flagged)" in done.stdout
  with open(os.path.join(report_dir, "report.json")) as f:
    rep = json.load(f)
  signed = [r["score_ours"] for r in accepted if not r["is_trap"]]
  overall = rep["results"]["overall"]
  assert overall["n"] == 30 and rep["answers"]["traps"] == 6
  assert overall["cmos"]["mean"] == pytest.approx(sum(signed) / len(signed))
  assert overall["preference"]["wins"] == signed.count(2)
  for name in ("report.md", "scores.png"):
    assert os.path.getsize(os.path.join(report_dir, name)) > 500
