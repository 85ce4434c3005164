"""The rater's page: one HTML document, its stylesheet and its script
(welcome, training with a practice pair, the rated pairs, the end)."""

INDEX_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Listening test</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<header>
  <span class="brand">Listening test</span>
  <span id="progress" hidden><span id="count"></span>
    <span class="bar"><span id="fill"></span></span></span>
</header>
<main>
<div id="error" class="error" hidden></div>

<section id="welcome" hidden>
  <h1>Compare pairs of recordings</h1>
  <p>You will hear pairs of short recordings, <b>A</b> and <b>B</b>, of the
  same sentence, and tell us which one you prefer. It takes about
  <span id="minutes">10</span> minutes. Please use headphones in a quiet
  place.</p>
  <label for="name">Your name or rater id (optional)</label>
  <input id="name" maxlength="100" autocomplete="off">
  <button id="start" class="primary">Start</button>
</section>

<section id="training" hidden>
  <h1>How to rate</h1>
  <p>For every pair, play <b>A</b> and <b>B</b> (in any order, as often as
  you like), then pick one point on this scale:</p>
  <ol id="legend" class="legend"></ol>
  <p>The test has up to two parts. <b>Without context</b>: which recording
  sounds more natural, more like a human speaking? <b>With context</b>: you
  first hear the previous turn of a conversation; which recording is the
  more appropriate continuation of it?</p>
  <p>Some pairs may sound identical. When you hear no difference, choose
  <b>0</b>.</p>
  <h2>Practice pair <small>(not recorded)</small></h2>
  <div id="practice"></div>
  <button id="begin" class="primary" disabled>Begin the test</button>
</section>

<section id="trial" hidden>
  <div id="part" class="part"></div>
  <div id="rater"></div>
  <button id="submit" class="primary" disabled>Submit</button>
</section>

<section id="done" hidden>
  <h1>Thank you!</h1>
  <p id="summary"></p>
  <p><a href="#" id="again">Start again as a new rater</a></p>
</section>
</main>
<script src="/app.js"></script>
</body>
</html>
"""

STYLE_CSS = """
:root { --a: #2f6fb0; --b: #c7652a; --ink: #1d2430; --soft: #f3f5f8; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI",
  Roboto, "DejaVu Sans", sans-serif; color: var(--ink); background: #e9edf2; }
header { display: flex; justify-content: space-between; align-items: center;
  padding: 12px 28px; background: var(--ink); color: #fff; }
.brand { font-weight: 600; letter-spacing: .02em; }
#count { font-variant-numeric: tabular-nums; margin-right: 10px; }
.bar { display: inline-block; width: 160px; height: 8px; background: #46505f;
  border-radius: 4px; vertical-align: middle; overflow: hidden; }
#fill { display: block; height: 100%; width: 0; background: #7fc97f; }
main { max-width: 860px; margin: 24px auto; padding: 24px 32px;
  background: #fff; border-radius: 12px; box-shadow: 0 2px 12px #0002; }
h1 { font-size: 1.5em; margin: .2em 0 .6em; }
h2 { font-size: 1.15em; margin-top: 1.4em; } small { color: #667; }
label { display: block; margin-top: 1em; font-weight: 600; }
input { font: inherit; padding: 8px 10px; width: 100%; max-width: 360px;
  border: 1px solid #b8c0cc; border-radius: 6px; }
button { font: inherit; cursor: pointer; border-radius: 8px; }
button:disabled { cursor: not-allowed; opacity: .45; }
.primary { display: block; margin: 22px auto 4px; padding: 10px 36px;
  border: 0; background: var(--ink); color: #fff; font-weight: 600; }
.part { color: #556; font-size: .9em; text-transform: uppercase;
  letter-spacing: .06em; }
.question { font-size: 1.2em; font-weight: 600; margin: .3em 0 .8em; }
.said { background: var(--soft); border-radius: 8px; padding: 8px 14px;
  margin: 0 0 14px; }
.said b { color: #556; font-weight: 600; margin-right: .4em; }
.clips { display: flex; gap: 16px; margin: 10px 0 18px; }
.clip { flex: 1; text-align: center; padding: 14px; border-radius: 10px;
  background: var(--soft); }
.clip button { width: 100%; padding: 12px; border: 2px solid currentColor;
  background: #fff; font-weight: 700; font-size: 1.05em; }
.clip.a button { color: var(--a); } .clip.b button { color: var(--b); }
.clip.ctx button { color: #555; }
.clip .state { font-size: .85em; color: #778; margin-top: 6px; }
.clip.played .state { color: #2e7d32; }
.scale { display: grid; grid-template-columns: repeat(7, 1fr); gap: 6px; }
.point { padding: 8px 2px; border: 2px solid #ccd3dc; background: #fff;
  text-align: center; font-size: .8em; line-height: 1.25; }
.point .v { display: block; font-size: 1.35em; font-weight: 700; }
.point.sa { border-color: #b9cfe6; } .point.sb { border-color: #ecc9b3; }
.point.sa .v { color: var(--a); } .point.sb .v { color: var(--b); }
.point.on { background: var(--ink); border-color: var(--ink); color: #fff; }
.point.on .v { color: #fff; }
.ends { display: flex; justify-content: space-between; font-size: .8em;
  color: #667; margin-top: 4px; }
.hint { text-align: center; color: #778; font-size: .85em; margin: 10px 0 0; }
.legend { display: grid; grid-template-columns: repeat(7, 1fr); gap: 6px;
  padding: 0; list-style: none; text-align: center; font-size: .85em; }
.legend li { background: var(--soft); border-radius: 6px; padding: 6px 2px; }
.legend b { display: block; font-size: 1.2em; }
.error { background: #fdecea; color: #8a1c12; padding: 10px 14px;
  border-radius: 8px; margin-bottom: 14px; }
"""

APP_JS = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const S = { session: null, scale: [], widget: null, trial: null };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function show(id) {
  for (const s of ["welcome", "training", "trial", "done"]) $(s).hidden = s !== id;
}
function fail(msg) { $("error").textContent = msg; $("error").hidden = false; }
function forget() { document.cookie = "listen_session=; Max-Age=0; Path=/"; }
function cookie() {
  const m = document.cookie.match(/(?:^|; )listen_session=([0-9a-f]+)/);
  return m ? m[1] : null;
}
async function api(path, body) {
  const r = await fetch(path, { method: "POST", body: JSON.stringify(body),
    headers: { "Content-Type": "application/json" } });
  const out = await r.json().catch(() => ({ error: "bad reply" }));
  out.status = r.status;
  return out;
}

// A pair widget: context (optional), A and B players, the 7-point scale.
// Every clip must be heard to its end before ``onChange`` reports ready.
function rater(root, spec, onChange) {
  root.replaceChildren();
  const players = [], st = { score: null };
  const ready = () => st.score !== null && players.every((p) => p.done);
  const changed = () => onChange(ready());
  if (spec.question) root.append(el("p", "question", spec.question));
  const said = (label, text) => {
    if (!text) return;
    const p = el("p", "said"); p.append(el("b", "", label), text);
    root.append(p);
  };
  said("Previous turn:", spec.context_text);
  said("Text:", spec.text);
  const row = el("div", "clips");
  const clip = (key, cls, label) => {
    const box = el("div", "clip " + cls), btn = el("button", "", "\u25B6 " + label);
    const state = el("div", "state", "not played yet");
    const audio = new Audio(spec.audio[key]);
    audio.preload = "auto";
    const p = { audio, done: false };
    btn.onclick = () => {
      if (!audio.paused) { audio.pause(); audio.currentTime = 0; return; }
      for (const q of players) if (q !== p) { q.audio.pause(); q.audio.currentTime = 0; }
      audio.play().catch((e) => fail("Cannot play audio: " + e.message));
    };
    audio.onplay = () => { btn.textContent = "\u25A0 Stop"; };
    audio.onpause = () => { btn.textContent = "\u25B6 " + label; };
    audio.onended = () => {
      p.done = true; box.classList.add("played");
      state.textContent = "\u2713 played"; changed();
    };
    audio.onerror = () => fail("Could not load audio " + label + ".");
    box.dataset.clip = key; box.append(btn, state); row.append(box);
    players.push(p);
  };
  if (spec.audio.context) clip("context", "ctx", "Previous turn");
  clip("a", "a", "Play A");
  clip("b", "b", "Play B");
  root.append(row);
  const scale = el("div", "scale");
  for (const [v, label] of S.scale) {
    const b = el("button", "point " + (v < 0 ? "sa" : v > 0 ? "sb" : "s0"));
    b.append(el("span", "v", v > 0 ? "+" + v : String(v)), label);
    b.dataset.score = v;
    b.onclick = () => {
      st.score = v;
      for (const c of scale.children) c.classList.toggle("on", c === b);
      changed();
    };
    scale.append(b);
  }
  const ends = el("div", "ends");
  ends.append(el("span", "", "\u2190 A is better"), el("span", "", "B is better \u2192"));
  root.append(scale, ends, el("p", "hint",
    "Play every clip to its end, then choose one point on the scale."));
  return { score: () => st.score, ready,
    stop: () => players.forEach((p) => p.audio.pause()) };
}

function progress(position, total) {
  $("progress").hidden = false;
  $("count").textContent = position + " / " + total;
  $("fill").style.width = (100 * (position - 1) / total) + "%";
}

async function next() {
  const r = await api("/api/next", { session: S.session });
  if (r.status === 404) { forget(); return welcome(); }
  if (r.status !== 200) return fail(r.error || "The server did not answer.");
  $("error").hidden = true;
  if (r.done) {
    $("progress").hidden = false; $("fill").style.width = "100%";
    $("count").textContent = r.total + " / " + r.total;
    $("summary").textContent = r.answered + " answers recorded. " +
      "Your rater code: " + r.session + ".";
    return show("done");
  }
  S.trial = r; S.t0 = performance.now();
  progress(r.position + 1, r.total);
  $("part").textContent = "Part " + r.part + " of " + r.parts + " \u00B7 " + r.title;
  $("submit").disabled = true;
  S.widget = rater($("rater"), r, (ok) => { $("submit").disabled = !ok; });
  show("trial");
  window.scrollTo(0, 0);
}

async function submit() {
  $("submit").disabled = true;
  S.widget.stop();
  const r = await api("/api/answer", { session: S.session, pair: S.trial.pair,
    score: S.widget.score(), time_ms: Math.round(performance.now() - S.t0) });
  // 409 on a repeated click: that answer is already stored.
  if (r.status === 200 || r.status === 409) return next();
  $("submit").disabled = false;
  fail(r.error || "The answer was not recorded; please try again.");
}

function welcome() { show("welcome"); }

async function start() {
  $("start").disabled = true;
  const r = await api("/api/start", { rater_name: $("name").value });
  if (r.status !== 200) { $("start").disabled = false; return fail(r.error); }
  S.session = r.session;
  $("legend").replaceChildren(...r.scale.map(([v, label]) => {
    const li = el("li"); li.append(el("b", "", v > 0 ? "+" + v : String(v)), label);
    return li;
  }));
  const w = rater($("practice"), r.practice, (ok) => { $("begin").disabled = !ok; });
  $("begin").onclick = () => { w.stop(); next(); };
  show("training");
}

async function init() {
  // The scale and the test's length come from the server, the one source.
  const info = await fetch("/info.json").then((x) => x.json()).catch(() => null);
  if (!info) return fail("The server did not answer.");
  S.scale = info.scale;
  $("minutes").textContent = Math.max(2, Math.round(info.trials * 20 / 60));
  const saved = cookie();
  if (saved) { S.session = saved; next(); } else welcome();
}

$("start").onclick = start;
$("submit").onclick = submit;
$("again").onclick = (e) => {
  e.preventDefault(); forget(); location.reload();
};
init();
"""
