"""The web app over real HTTP: sessions, answers, rejections, restarts."""

import collections
import contextlib
import http.client
import json
import os
import sqlite3
import threading
import urllib.parse

import pytest

from csm_jax.eval.listening import pairs as pairs_lib
from csm_jax.eval.listening import server as server_lib
from csm_jax.eval.listening import store as store_lib
from tests.eval.test_listening_pairs import make_pairs


@contextlib.contextmanager
def running(pairs_dir, db, **kw):
  """A live server on a free port; yields its base URL."""
  ps = pairs_lib.load_pairs(pairs_dir)
  st = store_lib.Store(db, {"name": ps.name, "system": ps.system,
                            "baseline": ps.baseline})
  httpd = server_lib.make_server(server_lib.App(ps, st, **kw), "127.0.0.1", 0)
  thread = threading.Thread(target=httpd.serve_forever, daemon=True)
  thread.start()
  try:
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
  finally:
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
    st.close()


def request(base, method, path, body=None, raw=None, headers=None):
  """(status, decoded JSON or raw bytes, headers) of one request."""
  url = urllib.parse.urlsplit(base)
  conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
  data = raw if raw is not None else (
      None if body is None else json.dumps(body).encode())
  try:
    conn.putrequest(method, path)
    hdrs = {"Content-Length": str(len(data))} if data is not None else {}
    hdrs.update(headers or {})
    for k, v in hdrs.items():
      if v is not None:
        conn.putheader(k, v)
    conn.endheaders(data)
    resp = conn.getresponse()
    payload = resp.read()
    if resp.getheader("Content-Type", "").startswith("application/json"):
      payload = json.loads(payload)
    return resp.status, payload, dict(resp.getheaders())
  finally:
    conn.close()


def post(base, path, body):
  return request(base, "POST", path, body)[:2]


def db_answers(db):
  conn = sqlite3.connect(db)
  conn.row_factory = sqlite3.Row
  try:
    return [dict(r) for r in conn.execute(
        "SELECT * FROM answers ORDER BY answered_at")]
  finally:
    conn.close()


def db_trials(db, session):
  conn = sqlite3.connect(db)
  conn.row_factory = sqlite3.Row
  try:
    return {r["pair"]: dict(r) for r in conn.execute(
        "SELECT * FROM trials WHERE session_id = ?", (session,))}
  finally:
    conn.close()


def play_session(base, score_for=lambda i: (i % 7) - 3, limit=None):
  """Starts a session and answers up to ``limit`` trials; returns the
  session id and the served trials with the scores given."""
  status, start = post(base, "/api/start", {"rater_name": "tester"})
  assert status == 200, start
  session, served = start["session"], []
  while limit is None or len(served) < limit:
    status, trial = post(base, "/api/next", {"session": session})
    assert status == 200, trial
    if trial["done"]:
      break
    score = score_for(len(served))
    status, out = post(base, "/api/answer", {
        "session": session, "pair": trial["pair"], "score": score,
        "time_ms": 1234})
    assert status == 200, out
    assert out["answered"] == len(served) + 1
    served.append(dict(trial, score=score))
  return session, served


@pytest.fixture
def pairs_dir(tmp_path):
  return make_pairs(tmp_path, n=5)[0]


def test_session_serves_every_pair_once_and_stores_resigned_scores(
    pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  with running(pairs_dir, db) as base:
    session, served = play_session(base)
    status, done = post(base, "/api/next", {"session": session})
  assert status == 200 and done["done"] and done["answered"] == 12
  assert [t["position"] for t in served] == list(range(12))
  assert all(t["total"] == 12 for t in served)
  trials = db_trials(db, session)
  keys = [(trials[t["pair"]]["condition"], trials[t["pair"]]["item_id"])
          for t in served if trials[t["pair"]]["side_a"] != "trap"]
  assert len(keys) == len(set(keys)) == 10
  rows = {r["pair"]: r for r in db_answers(db)}
  assert len(rows) == 12
  for t in served:
    r, side = rows[t["pair"]], trials[t["pair"]]["side_a"]
    assert r["score"] == t["score"] and r["side_a"] == side
    assert r["session_id"] == session and r["time_ms"] == 1234
    assert r["is_trap"] == (side == "trap")
    want = {"ours": -t["score"], "baseline": t["score"], "trap": None}[side]
    assert r["score_ours"] == want
    assert r["answered_at"] >= r["served_at"] > 0 and r["server_ms"] >= 0
  conn = sqlite3.connect(db)
  assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
  assert conn.execute("SELECT rater_name FROM sessions").fetchone()[0] == (
      "tester")
  conn.close()


def test_sessions_get_random_order_and_both_sides(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  orders, sides = set(), collections.Counter()
  with running(pairs_dir, db) as base:
    for _ in range(6):
      session, served = play_session(base, lambda i: 0)
      trials = db_trials(db, session)
      orders.add(tuple(trials[t["pair"]]["item_id"] for t in served))
      sides.update(trials[t["pair"]]["side_a"] for t in served)
  assert len(orders) == 6
  assert sides["ours"] > 10 and sides["baseline"] > 10 and sides["trap"] == 12


def test_page_and_audio_routes(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  with running(pairs_dir, db) as base:
    status, page, _ = request(base, "GET", "/")
    assert status == 200 and b"/app.js" in page
    status, start, headers = request(base, "POST", "/api/start", {})
    assert "listen_session=" + start["session"] in headers["Set-Cookie"]
    _, trial = post(base, "/api/next", {"session": start["session"]})
    row = db_trials(db, start["session"])[trial["pair"]]
    status, wav, headers = request(base, "GET", trial["audio"]["a"])
    assert status == 200 and headers["Content-Type"] == "audio/wav"
    with open(os.path.join(pairs_dir, row["audio_a"]), "rb") as f:
      assert wav == f.read()
    assert request(base, "GET", "/audio/practice/b")[0] == 200
    later = [p for p, r in db_trials(db, start["session"]).items()
             if r["served_at"] is None]
    for path in ["/audio/%s/a" % later[0], "/pairs.json", "/answers.sqlite",
                 "/ours/000.wav", "/audio/../pairs.json",
                 "/audio/%2e%2e/pairs.json", "/audio/practice/../../pairs.json",
                 "/audio/practice/x", "/../../../etc/passwd"]:
      status, err, _ = request(base, "GET", path)
      assert status == 404 and "error" in err, path


def test_every_rejection_is_4xx_and_loses_nothing(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  with running(pairs_dir, db) as base:
    other, _ = play_session(base, limit=1)
    session, served = play_session(base, limit=3)
    before = db_answers(db)
    _, current = post(base, "/api/next", {"session": session})
    unserved = [p for p, r in db_trials(db, session).items()
                if r["served_at"] is None]
    good = {"session": session, "pair": current["pair"], "score": 1,
            "time_ms": 10}
    bad = [
        (400, dict(raw=b'{"session": ')),
        (400, dict(raw=b"\xff\xfe")),
        (400, dict(raw=b"[1, 2, 3]")),
        (400, dict(body={k: v for k, v in good.items() if k != "score"})),
        (400, dict(body={k: v for k, v in good.items() if k != "pair"})),
        (400, dict(body={k: v for k, v in good.items() if k != "session"})),
        (400, dict(body=dict(good, score="2"))),
        (400, dict(body=dict(good, score=True))),
        (400, dict(body=dict(good, score=1.5))),
        (400, dict(body=dict(good, score=4))),
        (400, dict(body=dict(good, score=-4))),
        (400, dict(body=dict(good, time_ms=-1))),
        (400, dict(body=dict(good, session=7))),
        (404, dict(body=dict(good, session="f" * 16))),
        (409, dict(body=dict(good, pair=served[0]["pair"]))),   # duplicate
        (409, dict(body=dict(good, pair=unserved[0]))),         # not yet served
        (409, dict(body=dict(good, pair="no-such-pair"))),
        (409, dict(body=dict(good, session=other))),            # not its pair
        (413, dict(raw=json.dumps(dict(good, pad="x" * 20000)).encode())),
        (413, dict(raw=b"{}", headers={"Content-Length": str(10 ** 9)})),
        (411, dict(raw=None)),
    ]
    for want, kw in bad:
      status, err, _ = request(base, "POST", "/api/answer", **kw)
      assert status == want, (kw, err)
      assert isinstance(err, dict) and err["status"] == want and err["error"]
    assert db_answers(db) == before
    assert request(base, "POST", "/api/start", {"rater_name": "x" * 101})[0] \
        == 400
    assert request(base, "POST", "/api/nope", {})[0] == 404
    assert post(base, "/api/next", {"session": "0" * 16})[0] == 404
    # The rejections left the session usable: the good answer still counts.
    assert post(base, "/api/answer", good)[0] == 200
    assert post(base, "/api/answer", good)[0] == 409
  assert len(db_answers(db)) == len(before) + 1


def test_concurrent_duplicates_store_one_answer(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  with running(pairs_dir, db) as base:
    _, start = post(base, "/api/start", {})
    _, trial = post(base, "/api/next", {"session": start["session"]})
    body = {"session": start["session"], "pair": trial["pair"], "score": -2,
            "time_ms": 5}
    statuses = []
    threads = [threading.Thread(
        target=lambda: statuses.append(post(base, "/api/answer", body)[0]))
               for _ in range(8)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  assert sorted(statuses) == [200] + [409] * 7
  assert len(db_answers(db)) == 1


def test_restart_keeps_answers_and_resumes_the_session(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  with running(pairs_dir, db) as base:
    session, served = play_session(base, limit=5)
    _, pending = post(base, "/api/next", {"session": session})
  before = db_answers(db)
  assert len(before) == 5
  with running(pairs_dir, db) as base:
    assert db_answers(db) == before
    # The trial served before the restart comes back, not a new one.
    _, again = post(base, "/api/next", {"session": session})
    assert again["pair"] == pending["pair"] and again["position"] == 5
    assert request(base, "GET", again["audio"]["b"])[0] == 200
    status, _ = post(base, "/api/answer", {"session": session,
                                           "pair": served[0]["pair"],
                                           "score": 0, "time_ms": 1})
    assert status == 409
    assert post(base, "/api/answer", {"session": session,
                                      "pair": again["pair"], "score": 3,
                                      "time_ms": 1})[0] == 200
  with running(pairs_dir, db) as base:
    assert len(db_answers(db)) == 6


def test_store_refuses_another_comparison(pairs_dir, tmp_path):
  db = str(tmp_path / "a.sqlite")
  store_lib.Store(db, {"name": "demo", "system": "ours",
                       "baseline": "ground_truth"}).close()
  with pytest.raises(store_lib.StoreError, match="baseline"):
    store_lib.Store(db, {"name": "demo", "system": "ours",
                         "baseline": "other_tts"})
