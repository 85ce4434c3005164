"""The web app's HTTP side: a JSON API over the store, the page, and the
audio of served trials under opaque URLs (no file path ever reaches it)."""

from __future__ import annotations

import http.server
import json
import logging
import random
import re
import secrets

from csm_jax.eval.listening import pages
from csm_jax.eval.listening import pairs as pairs_lib
from csm_jax.eval.listening import protocol
from csm_jax.eval.listening.store import Rejected, Store

MAX_BODY = 16 * 1024
MAX_NAME = 100
_DRAIN = 1 << 20
MAX_TIME_MS = 24 * 3600 * 1000
COOKIE = "listen_session"
_AUDIO_URL = re.compile(r"^/audio/([A-Za-z0-9_-]{1,64})/(a|b|context)$")
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg"}
_STATIC = {"/": ("text/html; charset=utf-8", pages.INDEX_HTML),
           "/app.js": ("text/javascript; charset=utf-8", pages.APP_JS),
           "/style.css": ("text/css; charset=utf-8", pages.STYLE_CSS)}
log = logging.getLogger(__name__)


def _field(body: dict, key: str, kind: type, required: bool = True):
  if key not in body:
    if required:
      raise Rejected(400, f"missing field {key!r}")
    return None
  value = body[key]
  # JSON true/false would pass as the int 1/0 otherwise.
  if isinstance(value, bool) or not isinstance(value, kind):
    raise Rejected(400, f"field {key!r} must be {kind.__name__}, got "
                        f"{type(value).__name__}")
  return value


class App:
  """The test itself, free of HTTP: starts sessions, serves, records."""

  def __init__(self, ps: pairs_lib.PairSet, store: Store,
               max_items: int | None = None,
               rng: random.Random | None = None):
    self.pairs, self.store, self.max_items = ps, store, max_items
    self.rng = rng or random.SystemRandom()
    self._files = ps.files()

  def info(self) -> dict:
    """The scale and the number of trials a new session will get."""
    per = {c: sum(1 for it in self.pairs.items
                  if c == "no_context" or it.context)
           for c in self.pairs.conditions}
    if self.max_items is not None:
      per = {c: min(n, self.max_items) for c, n in per.items()}
    return {"scale": [list(p) for p in protocol.SCALE],
            "trials": sum(per.values()) + self.pairs.traps * len(per)}

  def start(self, body: dict, user_agent: str = "") -> dict:
    name = (_field(body, "rater_name", str, required=False) or "").strip()
    if len(name) > MAX_NAME:
      raise Rejected(400, f"field 'rater_name' is longer than {MAX_NAME} "
                          "characters")
    session = secrets.token_hex(8)
    trials = protocol.plan_session(self.pairs, self.rng, self.max_items)
    self.store.create_session(session, trials, name, user_agent[:300])
    pr = self.pairs.practice
    practice = {"text": pr.text, "context_text": pr.context_text,
                "question": protocol.QUESTIONS[
                    "context" if pr.context else "no_context"],
                "audio": {"a": "/audio/practice/a",
                          "b": "/audio/practice/b"}}
    if pr.context:
      practice["audio"]["context"] = "/audio/practice/context"
    return {"session": session, "rater_name": name, "total": len(trials),
            "scale": [list(p) for p in protocol.SCALE],
            "questions": protocol.QUESTIONS, "practice": practice}

  def next(self, body: dict) -> dict:
    session = _field(body, "session", str)
    trial, answered, total, blocks = self.store.next_trial(session)
    if trial is None:
      return {"done": True, "answered": answered, "total": total,
              "session": session}
    return protocol.public(trial, total, blocks)

  def answer(self, body: dict) -> dict:
    session = _field(body, "session", str)
    pair = _field(body, "pair", str)
    score = _field(body, "score", int)
    time_ms = _field(body, "time_ms", int)
    if not protocol.MIN_SCORE <= score <= protocol.MAX_SCORE:
      raise Rejected(400, f"field 'score' must be between "
                          f"{protocol.MIN_SCORE} and {protocol.MAX_SCORE}, "
                          f"got {score}")
    if not 0 <= time_ms <= MAX_TIME_MS:
      raise Rejected(400, f"field 'time_ms' must be between 0 and "
                          f"{MAX_TIME_MS}, got {time_ms}")
    answered, total = self.store.record_answer(session, pair, score, time_ms)
    return {"ok": True, "answered": answered, "total": total}

  def audio_file(self, pair: str, slot: str) -> str:
    """Absolute path of a clip; only files named by the pairs set."""
    if pair == "practice":
      pr = self.pairs.practice
      rel = {"a": pr.a, "b": pr.b, "context": pr.context}[slot]
    else:
      rel = self.store.served_audio(pair, slot)
    if rel is None or rel not in self._files:
      raise Rejected(404, "no such audio")
    return self.pairs.path(rel)


class Handler(http.server.BaseHTTPRequestHandler):
  """Routes requests to ``app`` (set by ``make_server`` on a subclass)."""

  app: App
  server_version = "csm-jax-listen/1"
  timeout = 30       # seconds; a stalled client frees its thread

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    log.debug("%s " + format, self.address_string(), *args)

  def _send(self, status: int, body: bytes, content_type: str,
            headers: dict[str, str] | None = None) -> None:
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    self.send_header("X-Content-Type-Options", "nosniff")
    for k, v in (headers or {}).items():
      self.send_header(k, v)
    self.end_headers()
    self.wfile.write(body)

  def _json(self, status: int, obj: dict, headers=None) -> None:
    self._send(status, json.dumps(obj).encode(), "application/json", headers)

  def _error(self, status: int, message: str) -> None:
    self._json(status, {"error": message, "status": status})

  def _body(self) -> dict:
    length = self.headers.get("Content-Length")
    if length is None:
      raise Rejected(411, "a JSON body with a Content-Length is required")
    try:
      n = int(length)
    except ValueError:
      raise Rejected(400, f"bad Content-Length {length!r}") from None
    if n < 0:
      raise Rejected(400, f"bad Content-Length {length!r}")
    if n > MAX_BODY:
      self.close_connection = True
      if n <= _DRAIN:
        # Reading what the client sends keeps its socket from being reset
        # before it can read the 413.
        try:
          self.rfile.read(n)
        except OSError:
          pass
      raise Rejected(413, f"body of {n} bytes is over the {MAX_BODY} byte "
                          "limit")
    raw = self.rfile.read(n)
    try:
      body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise Rejected(400, f"malformed JSON body ({e})") from None
    if not isinstance(body, dict):
      raise Rejected(400, f"the JSON body must be an object, got "
                          f"{type(body).__name__}")
    return body

  def _guard(self, fn) -> None:
    try:
      fn()
    except Rejected as e:
      self._error(e.status, e.message)
    except Exception:  # pylint: disable=broad-except
      log.exception("error handling %s %s", self.command, self.path)
      self._error(500, "internal error; the answer was not recorded")

  def do_GET(self):  # pylint: disable=invalid-name
    self._guard(self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._guard(self._post)

  def _get(self) -> None:
    path = self.path.split("?", 1)[0]
    if path == "/info.json":
      self._json(200, self.app.info())
      return
    if path in _STATIC:
      content_type, text = _STATIC[path]
      self._send(200, text.encode("utf-8"), content_type)
      return
    m = _AUDIO_URL.match(path)
    if not m:
      raise Rejected(404, f"no such page {path!r}")
    full = self.app.audio_file(m.group(1), m.group(2))
    with open(full, "rb") as f:
      data = f.read()
    ext = full[full.rfind("."):].lower()
    self._send(200, data, _MIME.get(ext, "application/octet-stream"))

  def _post(self) -> None:
    route = {"/api/start": "start", "/api/next": "next",
             "/api/answer": "answer"}.get(self.path)
    if route is None:
      raise Rejected(404, f"no such endpoint {self.path!r}")
    body = self._body()
    if route == "start":
      out = self.app.start(body, self.headers.get("User-Agent", ""))
      cookie = (f"{COOKIE}={out['session']}; Path=/; Max-Age=2592000; "
                "SameSite=Strict")
      self._json(200, out, {"Set-Cookie": cookie})
    else:
      self._json(200, getattr(self.app, route)(body))


def make_server(app: App, host: str = "127.0.0.1",
                port: int = 8765) -> http.server.ThreadingHTTPServer:
  """A bound, not yet serving server; port 0 picks a free one."""
  handler = type("BoundHandler", (Handler,), {"app": app})
  server = http.server.ThreadingHTTPServer((host, port), handler)
  server.daemon_threads = True
  return server
