"""The answers database: SQLite (WAL) with sessions, their planned trials,
and one committed row per accepted answer."""

from __future__ import annotations

import os
import pathlib
import sqlite3
import threading
import time

from csm_jax.eval.listening import ListeningError
from csm_jax.eval.listening import protocol

SCHEMA_VERSION = "1"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
  key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  rater_name TEXT NOT NULL DEFAULT '',
  user_agent TEXT NOT NULL DEFAULT '',
  n_trials INTEGER NOT NULL,
  created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
  session_id TEXT NOT NULL REFERENCES sessions (session_id),
  position INTEGER NOT NULL,
  pair TEXT NOT NULL UNIQUE,
  item_id TEXT NOT NULL,
  condition TEXT NOT NULL,
  side_a TEXT NOT NULL CHECK (side_a IN ('ours', 'baseline', 'trap')),
  audio_a TEXT NOT NULL,
  audio_b TEXT NOT NULL,
  context TEXT,
  text TEXT NOT NULL DEFAULT '',
  context_text TEXT NOT NULL DEFAULT '',
  served_at REAL,
  PRIMARY KEY (session_id, position));
CREATE TABLE IF NOT EXISTS answers (
  session_id TEXT NOT NULL REFERENCES sessions (session_id),
  pair TEXT NOT NULL REFERENCES trials (pair),
  item_id TEXT NOT NULL,
  condition TEXT NOT NULL,
  side_a TEXT NOT NULL,
  is_trap INTEGER NOT NULL,
  score INTEGER NOT NULL CHECK (score BETWEEN {protocol.MIN_SCORE}
                                          AND {protocol.MAX_SCORE}),
  score_ours INTEGER,
  time_ms INTEGER NOT NULL,
  server_ms INTEGER NOT NULL,
  served_at REAL NOT NULL,
  answered_at REAL NOT NULL,
  PRIMARY KEY (session_id, pair));
"""
_TRIAL_COLUMNS = ("pair", "position", "item_id", "condition", "side_a",
                  "audio_a", "audio_b", "context", "text", "context_text")


class StoreError(ListeningError):
  """The database cannot be used (wrong file, or holds another test)."""


class Rejected(Exception):
  """A request the server refuses; ``status`` is the HTTP 4xx code."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


def _connect(path: str) -> sqlite3.Connection:
  # Autocommit mode: every write below opens and commits its own
  # transaction, so nothing accepted can sit uncommitted in a buffer.
  conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                         timeout=30)
  conn.row_factory = sqlite3.Row
  return conn


class Store:
  """Thread-safe writes for the server: one connection behind one lock."""

  def __init__(self, path: str, comparison: dict[str, str]):
    """Opens (creating) ``path`` for the test ``comparison`` (name, system,
    baseline); a database of another comparison is refused, so that one
    analysis never mixes two."""
    self.path = path
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
      raise StoreError(f"{path}: folder {parent} does not exist")
    self._lock = threading.Lock()
    try:
      self._db = _connect(path)
      self._db.execute("PRAGMA journal_mode=WAL")
      # FULL: a commit is on disk (not just in the WAL's OS buffers) before
      # the answer is acknowledged.
      self._db.execute("PRAGMA synchronous=FULL")
      self._db.executescript(SCHEMA)
      self._check_meta(dict(comparison, schema_version=SCHEMA_VERSION))
    except sqlite3.DatabaseError as e:
      raise StoreError(f"{path}: not a usable SQLite database ({e})") from None

  def _check_meta(self, want: dict[str, str]) -> None:
    have = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
    for key, value in want.items():
      if key in have and have[key] != value:
        raise StoreError(f"{self.path}: holds the test {key}={have[key]!r}, "
                         f"not {value!r}; use another --db")
    with self._db:
      self._db.execute("BEGIN IMMEDIATE")
      self._db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                           sorted(want.items()))

  def close(self) -> None:
    with self._lock:
      self._db.close()

  def create_session(self, session_id: str, trials: list[protocol.Trial],
                     rater_name: str = "", user_agent: str = "") -> None:
    rows = [tuple(getattr(t, c) for c in _TRIAL_COLUMNS) for t in trials]
    with self._lock, self._db:
      self._db.execute("BEGIN IMMEDIATE")
      self._db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                       (session_id, rater_name, user_agent, len(trials),
                        time.time()))
      self._db.executemany(
          f"INSERT INTO trials (session_id, {', '.join(_TRIAL_COLUMNS)}) "
          f"VALUES (?{', ?' * len(_TRIAL_COLUMNS)})",
          [(session_id,) + r for r in rows])

  def _session(self, session_id: str) -> sqlite3.Row:
    row = self._db.execute("SELECT * FROM sessions WHERE session_id = ?",
                           (session_id,)).fetchone()
    if row is None:
      raise Rejected(404, f"unknown session {session_id!r}; start a new one")
    return row

  def _answered(self, session_id: str) -> int:
    return self._db.execute("SELECT COUNT(*) FROM answers WHERE session_id = ?",
                            (session_id,)).fetchone()[0]

  def blocks(self, session_id: str) -> list[str]:
    """The session's conditions in the order it plays them."""
    rows = self._db.execute(
        "SELECT condition, MIN(position) AS first FROM trials WHERE "
        "session_id = ? GROUP BY condition ORDER BY first", (session_id,))
    return [r["condition"] for r in rows]

  def next_trial(self, session_id: str):
    """(trial or None when done, answered, total, block order).

    Marks the trial served. A trial served but not answered (the page was
    reloaded, the server restarted) is served again rather than skipped.
    """
    with self._lock:
      session = self._session(session_id)
      row = self._db.execute(
          "SELECT * FROM trials t WHERE session_id = ? AND NOT EXISTS ("
          "SELECT 1 FROM answers a WHERE a.session_id = t.session_id AND "
          "a.pair = t.pair) ORDER BY position LIMIT 1",
          (session_id,)).fetchone()
      answered = self._answered(session_id)
      if row is None:
        return None, answered, session["n_trials"], []
      if row["served_at"] is None:
        with self._db:
          self._db.execute("BEGIN IMMEDIATE")
          self._db.execute("UPDATE trials SET served_at = ? WHERE pair = ?",
                           (time.time(), row["pair"]))
      trial = protocol.Trial(**{c: row[c] for c in _TRIAL_COLUMNS})
      return trial, answered, session["n_trials"], self.blocks(session_id)

  def served_audio(self, pair: str, slot: str) -> str | None:
    """Relative path of clip ``slot`` (a, b, context) of a served trial."""
    column = {"a": "audio_a", "b": "audio_b", "context": "context"}.get(slot)
    if column is None:
      return None
    with self._lock:
      row = self._db.execute(
          f"SELECT {column} FROM trials WHERE pair = ? AND served_at IS NOT "
          "NULL", (pair,)).fetchone()
    return None if row is None else row[0]

  def record_answer(self, session_id: str, pair: str, score: int,
                    time_ms: int) -> tuple[int, int]:
    """Commits one answer, or raises Rejected; returns (answered, total)."""
    with self._lock:
      session = self._session(session_id)
      trial = self._db.execute(
          "SELECT * FROM trials WHERE pair = ? AND session_id = ?",
          (pair, session_id)).fetchone()
      if trial is None or trial["served_at"] is None:
        raise Rejected(409, f"pair {pair!r} was not served to session "
                            f"{session_id!r}")
      now = time.time()
      try:
        with self._db:
          self._db.execute("BEGIN IMMEDIATE")
          self._db.execute(
              "INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
              (session_id, pair, trial["item_id"], trial["condition"],
               trial["side_a"], int(trial["side_a"] == "trap"), score,
               protocol.signed_score(score, trial["side_a"]), time_ms,
               int(round((now - trial["served_at"]) * 1000)),
               trial["served_at"], now))
      except sqlite3.IntegrityError:
        raise Rejected(409, f"pair {pair!r} is already answered in session "
                            f"{session_id!r}") from None
      return self._answered(session_id), session["n_trials"]


def read_answers(path: str) -> tuple[list[dict], dict[str, str]]:
  """(answers joined with their session, meta) from a database, read-only."""
  if not os.path.isfile(path):
    raise StoreError(f"{path}: no such database file")
  try:
    uri = pathlib.Path(path).absolute().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    conn.row_factory = sqlite3.Row
    try:
      tables = {r[0] for r in conn.execute(
          "SELECT name FROM sqlite_master WHERE type = 'table'")}
      if not {"answers", "sessions", "meta"} <= tables:
        raise StoreError(f"{path}: not a listening-test database (no "
                         "answers/sessions tables)")
      rows = [dict(r) for r in conn.execute(
          "SELECT a.*, s.rater_name FROM answers a JOIN sessions s USING "
          "(session_id) ORDER BY a.answered_at")]
      meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
      conn.close()
  except sqlite3.DatabaseError as e:
    raise StoreError(f"{path}: not a usable SQLite database ({e})") from None
  return rows, meta
