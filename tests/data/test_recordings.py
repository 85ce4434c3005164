"""Long recordings become turns, end to end, with a real CTC recognizer.

The recognizer is the project's own (``eval.instruments`` recipe, shared
trainer), made small and trained for 300 steps on a dozen synthesized
conversations, half of their turns under music and noise: about a minute
and a half once, then cached on disk (keyed by its recipe, its code and
its training text), so both test workers and later runs load it. The
recordings it aligns are other conversations of the embedded corpus laid
on one track with noise, a music bed, a music-only intro and overlapping
turns (``recording_bench.assemble``). Its CER is far from the corpus
recognizer's, so the bounds here are looser than the goals; the figures
with the corpus recognizer are measured by the slow test at the end.
"""

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import tempfile

import numpy as np
import pytest
import soundfile as sf

from csm_jax.data.corpora import ctc_align
from csm_jax.data.corpora import manifest as manifest_lib
from csm_jax.data.corpora import manifest_builder
from csm_jax.data.corpora import recording_bench as bench
from csm_jax.data.corpora import recording_manifest as rm
from csm_jax.data.corpora import recordings
from csm_jax.data.corpora import turn_cutting
from csm_jax.data.corpora.turns import turn_features_spec
from csm_jax.data.synthetic import dialogues

SR = 16000
SEED = 7                       # not the default corpus's seed: unseen text
TRAIN = range(12)
STEPS = 300
OVERRIDES = {"train.steps": STEPS, "train.warmup_steps": 30,
             "train.eval_every": STEPS, "train.log_every": 100,
             "data.batch_size": 8, "instrument.net.width": 96,
             "instrument.net.rnn_hidden": 96,
             "instrument.net.dilations": (1, 2),
             "instrument.data.window_frames": 800,
             "instrument.data.max_label": 250}
CACHE = os.path.join(tempfile.gettempdir(),
                     f"csm_jax_tests_recognizer_{os.getuid()}")
# This recognizer's posteriors are far less sharp than the corpus
# recognizer's (CER ~0.4 against ~0.09), so its words and turns score
# lower: the thresholds scale with it.
OPTIONS = recordings.Options(
    ctc_align.AlignOptions(min_word_score=0.15),
    turn_cutting.CutOptions(min_turn_score=0.25))


def _convs(indices):
  return [dialogues.synthesize_conversation(
      dialogues.plan_conversation(SEED, i), SR) for i in indices]


@contextlib.contextmanager
def _locked(path):
  import fcntl
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _train_recognizer(convs, workdir):
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.instruments import cache as cache_lib
  from csm_jax.eval.instruments import frontend
  from csm_jax.eval.instruments import recipes
  from csm_jax.eval.instruments.corpus import FeatureStore
  rng = np.random.default_rng(0)
  feats, texts = [], []
  for c in convs:
    for t in c.turns:
      x = t.audio.astype(np.float32) / 32768.0
      if rng.random() < 0.5:
        x = bench.mix_background(x, SR, rng, rng.uniform(-30, -15),
                                 rng.uniform(15, 35))
      feats.append(frontend.log_mel(x).astype(np.float16))
      texts.append(t.text)
  offsets = np.cumsum([0] + [len(f) for f in feats]).astype(np.int64)
  n = len(texts)
  store = FeatureStore(np.concatenate(feats), offsets, texts,
                       np.zeros(n, np.int32), np.zeros(n, np.int32),
                       ["c"] * n)
  cache_lib.train_instrument(recipes.RECOGNIZER, store, store, workdir,
                             overrides=OVERRIDES, progress=lambda _: None)


@pytest.fixture(scope="module")
def aligner():
  from csm_jax.eval import instruments  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.recording_aligner import RecognizerAligner
  convs = _convs(TRAIN)
  h = hashlib.sha256(json.dumps(OVERRIDES, sort_keys=True).encode())
  pkg = os.path.dirname(instruments.__file__)
  for path in [os.path.join(pkg, n) for n in ("models.py", "tasks.py",
                                               "recipes.py", "augment.py")
               ] + [bench.__file__]:
    with open(path, "rb") as f:
      h.update(f.read())
  h.update(inspect.getsource(_train_recognizer).encode())
  for c in convs:
    for t in c.turns:
      h.update(t.text.encode())
  workdir = os.path.join(CACHE, h.hexdigest()[:16])
  with _locked(os.path.join(CACHE, ".lock")):
    if not os.path.exists(os.path.join(workdir, "ready")):
      # Whatever an interrupted run left behind is trained again.
      shutil.rmtree(workdir + ".tmp", ignore_errors=True)
      shutil.rmtree(workdir, ignore_errors=True)
      _train_recognizer(convs, workdir + ".tmp")
      os.replace(workdir + ".tmp", workdir)
      open(os.path.join(workdir, "ready"), "w").close()
  return RecognizerAligner(workdir)


@pytest.fixture(scope="module")
def material(tmp_path_factory):
  """Three assembled recordings (two tagged, one plain) and a manifest."""
  d = tmp_path_factory.mktemp("recordings")
  out = {"dir": d, "truth": {}, "rows": []}
  for i, conv in enumerate(_convs([100, 101, 102])):
    a = bench.assemble(conv, seed=i, overlap_every=3, music_db=-22.0,
                       snr_db=30.0)
    rid = f"rec{i}"
    sf.write(d / f"{rid}.flac", a.audio, SR)
    (d / f"{rid}.txt").write_text(a.transcript(tagged=i < 2))
    out["truth"][rid] = a.truth
    out["rows"].append({"recording_id": rid, "audio": str(d / f"{rid}.flac"),
                        "transcript": str(d / f"{rid}.txt")})
    out[rid] = a
  return out


def _manifest(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


@pytest.fixture(scope="module")
def aligned(aligner, material):
  """The three recordings through the alignment stage."""
  recs = rm.read_manifest(_manifest(
      material["dir"] / "all.jsonl", material["rows"]))
  outs = recordings.align_all(recs, aligner, OPTIONS)
  return {o["report"]["recording_id"]: o for o in outs}


def test_tagged_recordings_give_turns_at_their_times(aligned, material):
  for rid in ("rec0", "rec1"):
    report = aligned[rid]["report"]
    m = bench.measure(report, material["truth"][rid])
    print(rid, {k: v for k, v in m.items() if k != "boundary_errors_s"})
    assert report["speakers"] == {"source": "tags", "count": len(
        {t["speaker"] for t in material["truth"][rid]}),
                                  "kept": report["speakers"]["kept"]}
    assert m["boundary_error_median_s"] <= 0.1
    assert m["speaker_attribution"] >= 0.95
    assert m["aligned_share"] >= 0.7
    assert m["coverage"] >= 0.5
    aligned_s = sum(e - s for s, e in report["aligned_spans"])
    assert aligned_s >= 0.6 * report["speech_s"]
    kept = aligned[rid]["conversation"]["turns"]
    assert all(t["start"] <= t["speech_start"] < t["speech_end"] <= t["end"]
               for t in kept)
    # Each word's aligned start, for the aligned text stream: the turn's
    # speech starts near its first aligned word, and the manifest reads it.
    for t in kept:
      ws = t["word_starts"]
      assert len(ws) == len(t["text"].split())
      known = [w for w in ws if w is not None]
      assert known == sorted(known) and len(known) >= 0.5 * len(ws)
      # (speech_start is the first word's start moved out to the level's
      # rise, a little earlier)
      assert abs(known[0] - (t["speech_start"] - t["start"])) <= 0.25
      assert known[-1] <= t["end"] - t["start"]
    conv = manifest_lib.parse_conversation(aligned[rid]["conversation"],
                                           str(material["dir"]))
    assert [t.word_starts for t in conv.turns] == [
        tuple(t["word_starts"]) for t in kept]


def test_untagged_recording_finds_its_speakers(aligned, material):
  report = aligned["rec2"]["report"]
  truth = material["truth"]["rec2"]
  m = bench.measure(report, truth)
  print("rec2", {k: v for k, v in m.items() if k != "boundary_errors_s"})
  assert report["speakers"]["source"] == "clustering"
  assert report["speakers"]["count"] == len({t["speaker"] for t in truth})
  assert m["speaker_attribution"] >= 0.9
  assert m["boundary_error_median_s"] <= 0.1
  assert m["coverage"] >= 0.5


def test_a_transcript_of_other_audio_is_reported_not_kept(aligner, material,
                                                          tmp_path):
  # rec0's audio with rec1's lines appended: those lines are never said.
  a, b = material["rec0"], material["rec1"]
  sf.write(tmp_path / "mixed.flac", a.audio, SR)
  (tmp_path / "mixed.txt").write_text(a.transcript() + "\n"
                                      + b.transcript())
  sf.write(tmp_path / "wrong.flac", a.audio, SR)
  (tmp_path / "wrong.txt").write_text(b.transcript())
  recs = rm.read_manifest(_manifest(tmp_path / "m.jsonl", [
      {"recording_id": "mixed", "audio": "mixed.flac",
       "transcript": "mixed.txt"},
      {"recording_id": "wrong", "audio": "wrong.flac",
       "transcript": "wrong.txt"}]))
  mixed, wrong = [o["report"] for o in recordings.align_all(
      recs, aligner, OPTIONS)]
  n_a = len(a.transcript().split())
  late = [r for r in mixed["unaligned_text"] if r["last_word"] >= n_a]
  # Every word of the appended lines is listed as unaligned...
  said = set()
  for r in late:
    said.update(range(max(r["first_word"], n_a), r["last_word"] + 1))
  assert len(said) >= 0.9 * (mixed["words"] - n_a)
  # ...and so are their turns: excluded, and counted.
  extra = mixed["turns"][len(a.truth):]
  assert sum(not t["kept"] for t in extra) >= 0.8 * len(extra)
  assert mixed["turns_excluded"] >= sum(not t["kept"] for t in extra)
  # A transcript of other audio altogether keeps nothing, and its audio
  # is reported as speech no word was aligned to.
  assert wrong["aligned_share"] < 0.3
  assert wrong["turns_kept"] == 0
  assert wrong["turns_excluded"] == len(wrong["turns"])
  assert sum(e - s for s, e in wrong["unaligned_audio"]) >= (
      0.5 * wrong["speech_s"])
  assert sum(r["last_word"] - r["first_word"] + 1
             for r in wrong["unaligned_text"]) == (wrong["words"]
                                                   - wrong["aligned_words"])


def _build_manifest(material, tmp_path):
  rows = material["rows"][:2] + [
      {"recording_id": "lost", "audio": str(tmp_path / "lost.wav"),
       "transcript": str(material["dir"] / "rec0.txt")}]
  return _manifest(tmp_path / "calls.jsonl", rows)


def test_prepare_builds_the_corpus_every_corpus_builds(aligner, material,
                                                       tmp_path):
  path = _build_manifest(material, tmp_path)
  lines = []
  b = recordings.prepare(path, aligner, data_dir=str(tmp_path / "data"),
                         options=OPTIONS, log=lines.append)
  assert any(ln.strip() == "recording rejected: missing audio: no audio "
             f"file for {material['dir'] / 'rec0.txt'} ({tmp_path}/lost.wav)"
             for ln in lines)
  src = manifest_builder.data_source("train", "calls", str(tmp_path / "data"))
  val = manifest_builder.data_source("validation", "calls",
                                     str(tmp_path / "data"))
  recs = [src[i] for i in range(len(src))] + [val[i] for i in range(len(val))]
  assert set(turn_features_spec()) <= set(recs[0])
  report = json.loads((tmp_path / "data" / "recordings" / "calls" /
                       recordings.REPORT).read_text())
  assert len(recs) == report["turns_kept"] > 0
  assert os.path.exists(os.path.join(os.fspath(b.data_dir),
                                     recordings.REPORT))
  by_conv = {}
  for r in recs:
    by_conv.setdefault(r["conversation_id"].decode(), []).append(r)
  assert set(by_conv) == {"rec0", "rec1"}
  for rid, rs in by_conv.items():
    rs.sort(key=lambda r: r["turn_index"])
    truth = material["truth"][rid]
    names = {t["speaker"] for t in truth}
    assert {r["speaker_name"].decode() for r in rs} <= names
    for r in rs:
      seconds = len(r["audio"]) / r["sample_rate"]
      assert seconds == pytest.approx(r["end_s"] - r["start_s"], abs=0.01)
  # Unchanged inputs are not aligned again.
  lines.clear()
  recordings.prepare(path, aligner, data_dir=str(tmp_path / "data"),
                     options=OPTIONS, log=lines.append)
  assert any("is up to date" in ln for ln in lines)


def test_beam_path_gives_the_same_turns(aligner, material, tmp_path):
  pytest.importorskip("apache_beam")
  path = _manifest(tmp_path / "one.jsonl", material["rows"][1:2])
  recordings.align_manifest(path, aligner, data_dir=str(tmp_path / "py"),
                            options=OPTIONS, log=lambda _: None)
  recordings.prepare(path, aligner, data_dir=str(tmp_path / "beam"),
                     options=OPTIONS, beam_runner="DirectRunner",
                     log=lambda _: None)
  read = lambda root: (tmp_path / root / "recordings" / "one" /
                       recordings.TURNS).read_text()
  assert read("py") == read("beam")
  src = manifest_builder.data_source("train", "one", str(tmp_path / "beam"))
  assert len(src) == len(json.loads(read("beam"))["turns"])


@pytest.mark.slow
def test_goals_with_the_corpus_recognizer(tmp_path):
  """The figures of docs/data.md: eight recordings (two untagged), music,
  noise and overlaps, aligned by the corpus recognizer (trained on first
  use), or by the instruments cache or recognizer workdir named by
  $CSM_JAX_RECORDINGS_RECOGNIZER."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.recording_aligner import RecognizerAligner
  from csm_jax.eval.recording_aligner import default_aligner
  given = os.environ.get("CSM_JAX_RECORDINGS_RECOGNIZER")
  al = RecognizerAligner(given) if given else default_aligner()
  rows, truth, assembled = [], {}, {}
  for i, conv in enumerate(_convs(range(200, 208))):
    a = bench.assemble(conv, seed=i, overlap_every=3, music_db=-22.0,
                       snr_db=30.0)
    rid = f"r{i}"
    sf.write(tmp_path / f"{rid}.flac", a.audio, SR)
    (tmp_path / f"{rid}.txt").write_text(a.transcript(tagged=i % 4 != 3))
    rows.append({"recording_id": rid, "audio": f"{rid}.flac",
                 "transcript": f"{rid}.txt"})
    truth[rid] = a.truth
  recs = rm.read_manifest(_manifest(tmp_path / "m.jsonl", rows))
  outs = recordings.align_all(recs, al, recordings.Options())
  ms = {o["report"]["recording_id"]: bench.measure(
      o["report"], truth[o["report"]["recording_id"]]) for o in outs}
  for rid, m in ms.items():
    print(rid, json.dumps({k: v for k, v in m.items()
                           if k != "boundary_errors_s"}))
  figures = {}
  for kind, ids in (("tagged", [f"r{i}" for i in range(8) if i % 4 != 3]),
                    ("untagged", ["r3", "r7"]), ("all", list(ms))):
    sel = [ms[i] for i in ids]
    figures[kind] = {
        "boundary_error_median_s": float(np.median(
            sum((m["boundary_errors_s"] for m in sel), []))),
        "speaker_attribution": float(np.mean(
            [m["speaker_attribution"] for m in sel])),
        "coverage": float(np.mean([m["coverage"] for m in sel])),
        "aligned_share": float(np.mean([m["aligned_share"] for m in sel]))}
    print(kind, json.dumps(figures[kind]))
  tagged = figures["tagged"]
  assert tagged["boundary_error_median_s"] <= 0.08
  assert tagged["speaker_attribution"] >= 0.97
  assert figures["all"]["aligned_share"] >= 0.9
