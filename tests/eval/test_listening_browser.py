"""A whole rater session in headless Chromium, checked against the database.

With LISTENING_SCREENSHOT=PATH set, the third rated pair is also saved as a
PNG (docs/img/listening_page.png is made this way).
"""

import os
import random
import sqlite3
import time

import pytest

from csm_jax.eval.listening import report as report_lib
from csm_jax.eval.listening import store as store_lib
from tests.eval.test_listening_pairs import make_pairs
from tests.eval.test_listening_server import db_answers, running

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the background-networking flags Chromium keeps dialing out, which
# a closed network answers by refusing its connections.
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync",
         "--window-size=1000,900", "--hide-scrollbars")
SCORES = [3, -2, 1, 0, -3, 2, -1, 3, 0, -2, 1, 2]


@pytest.fixture
def browser(tmp_path):
  # pylint: disable=import-outside-toplevel
  try:
    from selenium import webdriver
    from selenium.common import WebDriverException
    from selenium.webdriver.chrome.service import Service
  except ImportError:
    pytest.skip("selenium is not installed (pip install selenium==4.52.0)")
  for path in (CHROMIUM, CHROMEDRIVER):
    if not os.access(path, os.X_OK):
      pytest.skip(f"{path} is missing (apt-get install chromium "
                  "chromium-driver)")
  options = webdriver.ChromeOptions()
  options.binary_location = CHROMIUM
  for flag in FLAGS + (f"--user-data-dir={tmp_path / 'profile'}",):
    options.add_argument(flag)
  try:
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
  except WebDriverException as e:
    pytest.skip(f"Chromium does not start here: {e.msg.splitlines()[0]}")
  driver.set_page_load_timeout(30)
  try:
    yield driver
  finally:
    driver.quit()


def _wait(driver, predicate, what, timeout=15.0):
  end = time.monotonic() + timeout
  while time.monotonic() < end:
    value = predicate()
    if value:
      return value
    time.sleep(0.05)
  error = driver.execute_script("return document.getElementById('error')"
                                ".textContent")
  raise AssertionError(f"timed out waiting for {what}; page error: {error!r}")


def _visible(driver, section):
  return driver.execute_script(
      f"return !document.getElementById('{section}').hidden")


def _rate(driver, root, score):
  """Plays every clip of the widget in ``root`` to its end, picks ``score``."""
  by = "css selector"
  clips = driver.find_elements(by, f"#{root} .clip")
  for clip in clips:
    clip.find_element(by, "button").click()
    _wait(driver, lambda c=clip: "played" in c.get_attribute("class"),
          f"clip {clip.get_attribute('data-clip')} to play to its end")
  driver.find_element(by, f'#{root} .point[data-score="{score}"]').click()
  return [c.get_attribute("data-clip") for c in clips]


def test_browser_plays_a_whole_session(browser, tmp_path):
  pairs_dir, _ = make_pairs(tmp_path, n=5, seconds=0.25)
  db = str(tmp_path / "answers.sqlite")
  by = "css selector"
  chosen = {}
  # Seeded so that the screenshot always shows a pair with context.
  with running(pairs_dir, db, rng=random.Random(6)) as base:
    browser.get(base + "/")
    _wait(browser, lambda: _visible(browser, "welcome"), "the welcome page")
    browser.find_element(by, "#name").send_keys("rater-7")
    browser.find_element(by, "#start").click()
    _wait(browser, lambda: _visible(browser, "training"), "the training page")
    legend = browser.find_element(by, "#legend").text
    assert "A much better" in legend and "B much better" in legend
    assert not browser.find_element(by, "#begin").is_enabled()
    assert _rate(browser, "practice", 0) == ["context", "a", "b"]
    _wait(browser, lambda: browser.find_element(by, "#begin").is_enabled(),
          "the begin button")
    browser.find_element(by, "#begin").click()
    for k, score in enumerate(SCORES):
      _wait(browser, lambda k=k: browser.find_element(by, "#count").text ==
            f"{k + 1} / 12", f"pair {k + 1} / 12")
      pair = browser.execute_script("return S.trial.pair")
      # An attentive rater: identical audio gets 0.
      if _side_a(db, pair) == "trap":
        score = 0
      submit = browser.find_element(by, "#submit")
      assert not submit.is_enabled()
      clips = _rate(browser, "rater", score)
      assert clips[-2:] == ["a", "b"]
      _wait(browser, submit.is_enabled, "the submit button")
      if k == 2 and os.environ.get("LISTENING_SCREENSHOT"):
        browser.save_screenshot(os.environ["LISTENING_SCREENSHOT"])
      submit.click()
      chosen[pair] = score
    _wait(browser, lambda: _visible(browser, "done"), "the end page")
    assert "12 answers recorded" in browser.find_element(by, "#summary").text
  _check_db(db, chosen)
  rows, meta = store_lib.read_answers(db)
  rep = report_lib.build_report(rows, meta, reps=200)
  assert rep["raters"]["flagged"] == [] and rep["traps"]["mean_abs"] == 0
  assert rep["results"]["overall"]["n"] == 10
  # A restarted server has every answer, and the page resumes at its end.
  with running(pairs_dir, db) as base:
    _check_db(db, chosen)
    browser.get(base + "/")
    _wait(browser, lambda: _visible(browser, "done"), "the resumed end page")
    assert "12 answers recorded" in browser.find_element(by, "#summary").text


def _side_a(db, pair):
  conn = sqlite3.connect(db)
  try:
    return conn.execute("SELECT side_a FROM trials WHERE pair = ?",
                        (pair,)).fetchone()[0]
  finally:
    conn.close()


def _check_db(db, chosen):
  rows = {r["pair"]: r for r in db_answers(db)}
  assert set(rows) == set(chosen)
  conn = sqlite3.connect(db)
  try:
    names = {r[0] for r in conn.execute("SELECT rater_name FROM sessions")}
  finally:
    conn.close()
  assert names == {"rater-7"}
  sides = set()
  for pair, score in chosen.items():
    r = rows[pair]
    sides.add(r["side_a"])
    assert r["score"] == score
    want = {"ours": -score, "baseline": score, "trap": None}[r["side_a"]]
    assert r["score_ours"] == want
    assert r["time_ms"] > 200      # every clip was played before submitting
  assert "trap" in sides

