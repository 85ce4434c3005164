"""The parts of the long-recording pipeline that need no acoustic model:
the recordings manifest and its one-line rejections (also through the
command line), transcripts with and without tags, streaming reads, the
energy detector and segmenting, the CTC Viterbi with free start and end,
speaker clustering and turn cuts."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from csm_jax.data.corpora import ctc_align
from csm_jax.data.corpora import long_audio
from csm_jax.data.corpora import recording_manifest as rm
from csm_jax.data.corpora import speaker_clusters
from csm_jax.data.corpora import turn_cutting

SR = 16000


def _write_manifest(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def test_transcripts_with_and_without_tags():
  tagged = rm.parse_transcript("A: Hello there.\n\nDr. Who:  Hi: you.\n")
  assert [(ln.speaker, ln.text) for ln in tagged] == [
      ("A", "Hello there."), ("Dr. Who", "Hi: you.")]
  plain = rm.parse_transcript("We met at 10:30. Note: bring tea.\nOk.")
  assert all(ln.speaker is None for ln in plain)
  # One untagged line makes the whole text plain, unless tags are forced.
  mixed = "A: one two\nthree four\nB: five"
  assert rm.parse_transcript(mixed)[0].speaker is None
  forced = rm.parse_transcript(mixed, tagged=True)
  assert [ln.speaker for ln in forced] == ["A", "A", "B"]
  assert rm.parse_transcript("A: x", tagged=False)[0].speaker is None


def test_broken_manifest_names_file_line_and_field(tmp_path):
  path = _write_manifest(tmp_path / "m.jsonl", [
      {"recording_id": "a", "audio": "a.wav", "text": "hi"},
      {"recording_id": "a", "audio": "b.wav", "text": "hi"}])
  with pytest.raises(rm.RecordingsError, match=r"m.jsonl:2: .*already used"):
    rm.read_manifest(path)
  path = _write_manifest(tmp_path / "n.jsonl", [{"recording_id": "a"}])
  with pytest.raises(rm.RecordingsError, match=r"n.jsonl:1: missing field "
                     "'audio'"):
    rm.read_manifest(path)
  path = _write_manifest(tmp_path / "o.jsonl", [
      {"recording_id": "a", "audio": "a.wav", "text": "x",
       "num_speakers": True}])
  with pytest.raises(rm.RecordingsError, match="num_speakers"):
    rm.read_manifest(path)


@pytest.fixture
def bad_inputs(tmp_path):
  good = np.sin(np.arange(SR) * 0.05).astype(np.float32) * 0.3
  sf.write(tmp_path / "good.wav", good, SR)
  (tmp_path / "good.txt").write_text("A: hello\n")
  (tmp_path / "noise.wav").write_bytes(b"not audio at all\n" * 50)
  (tmp_path / "lonely.txt").write_text("A: where is my audio\n")
  (tmp_path / "blank.txt").write_text("\n   \n")
  rows = [
      {"recording_id": "corrupt", "audio": "noise.wav",
       "transcript": "good.txt"},
      {"recording_id": "no-audio", "audio": "gone.wav",
       "transcript": "lonely.txt"},
      {"recording_id": "no-transcript", "audio": "good.wav",
       "transcript": "gone.txt"},
      {"recording_id": "untranscribed", "audio": "good.wav"},
      {"recording_id": "empty", "audio": "good.wav",
       "transcript": "blank.txt"},
  ]
  return rm.read_manifest(_write_manifest(tmp_path / "bad.jsonl", rows))


@pytest.mark.parametrize("rid,reason,file", [
    ("corrupt", "corrupt", "noise.wav"),
    ("no-audio", "missing_audio", "gone.wav"),
    ("no-transcript", "missing_transcript", "gone.txt"),
    ("untranscribed", "missing_transcript", "good.wav"),
    ("empty", "empty_transcript", "blank.txt"),
])
def test_each_bad_recording_is_one_line_naming_its_file(bad_inputs, rid,
                                                        reason, file):
  rec = next(r for r in bad_inputs if r.recording_id == rid)
  with pytest.raises(rm.RecordingRejected) as info:
    rm.check(rec)
  e = info.value
  assert e.reason == reason and e.path.endswith(file)
  line = str(e)
  assert "\n" not in line and line.endswith(f"{file})")
  assert line.startswith("recording rejected: " + reason.replace("_", " "))


def test_blocks_stream_resampled_audio(tmp_path):
  rate = 44100
  x = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(3.3 * rate)) / rate)
       ).astype(np.float32)
  stereo = np.stack([x, -x * 0.5], axis=1)
  sf.write(tmp_path / "s.flac", stereo, rate)
  parts = list(long_audio.blocks(str(tmp_path / "s.flac"), SR, block_s=1.0))
  assert len(parts) >= 3       # never read whole
  y = np.concatenate(parts)
  assert abs(y.size - 3.3 * SR) <= 2
  # The downmix of x and -x/2 is x/4, resampled: a 220 Hz sine of 0.05.
  mid = y[SR // 2: -SR // 2]
  assert np.sqrt(np.mean(mid ** 2)) == pytest.approx(0.05 / np.sqrt(2),
                                                     rel=0.02)


def test_energy_detector_finds_speech_and_pauses():
  rng = np.random.default_rng(0)
  frames = np.full(600, -60.0) + rng.normal(0, 1, 600)    # 6 s of floor
  for a, b in ((100, 180), (185, 260), (400, 520)):       # 10 ms frames
    frames[a:b] = -20.0
  thr = long_audio.speech_threshold(frames)
  assert -55 < thr < -25
  regions = long_audio.speech_regions(frames, thr)
  # The 50 ms gap is bridged; the 1.4 s pause is not.
  assert [(round(s, 2), round(e, 2)) for s, e in regions] == [
      (1.0, 2.6), (4.0, 5.2)]
  segs = long_audio.alignment_segments(regions, 6.0, frames, target_s=2.0,
                                       max_s=4.0)
  assert segs[0] == (0.0, pytest.approx(3.3)) and segs[-1][1] == 6.0
  # A stretch with no pause at all is cut at its quietest frame by max_s.
  flat = np.full(1000, -20.0)
  flat[700] = -40.0
  segs = long_audio.alignment_segments([(0.0, 10.0)], 10.0, flat,
                                       target_s=5.0, max_s=8.0)
  assert segs[0] == (0.0, pytest.approx(7.0))


class _Alphabet:
  """Only what ``words_of`` reads: the symbols and their normalization
  (the acoustic model is replaced by posteriors made in each test)."""
  alphabet = "_ abcdefghijklmnopqrstuvwxyz"
  blank = 0

  @staticmethod
  def normalize(text):
    return "".join(c for c in text.lower() if c.isalpha() or c == " ")


def _posteriors(frame_ids, vocab=28, sharp=6.0):
  logits = np.zeros((len(frame_ids), vocab))
  logits[np.arange(len(frame_ids)), frame_ids] = sharp
  return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _frames(text, hold=3, gap=10):
  """Frame labels of ``text`` spoken after ``gap`` blank frames: every
  character held ``hold`` frames, then one blank."""
  ids = [0] * gap
  for c in text:
    i = _Alphabet.alphabet.index(c)
    ids += [i] * hold + [0]
  return ids + [0] * gap


def test_viterbi_skips_unspoken_words_and_leaves_the_rest():
  spoken = "cat sat on mats"
  lp = _posteriors(_frames(spoken))
  words = ctc_align.words_of(["dog ran.", "The cat sat on mats, later on."],
                             _Alphabet)
  ctc_align.align(lp, 0.02, [(0.0, len(lp) * 0.02)], words, _Alphabet,
                  ctc_align.AlignOptions(min_word_score=0.5))
  got = [w.text for w in words if w.aligned]
  assert got == ["cat", "sat", "on", "mats,"]
  cat = words[3]
  assert cat.start == pytest.approx((10 - 0.5) * 0.02)
  assert cat.end == pytest.approx((10 + 3 * 4 - 1 - 0.5) * 0.02)
  runs = ctc_align.unaligned_runs(words)
  assert [r["text"] for r in runs] == ["dog ran. The", "later on."]
  assert runs[0]["line"] == 1 and runs[1]["line"] == 2


def test_a_transcript_that_does_not_match_aligns_nothing():
  lp = _posteriors(_frames("zebra quiz jumps"))
  words = ctc_align.words_of(["hello world again today"], _Alphabet)
  ctc_align.align(lp, 0.02, [(0.0, len(lp) * 0.02)], words, _Alphabet)
  assert not any(w.aligned for w in words)
  assert ctc_align.unaligned_runs(words)[0]["text"] == (
      "hello world again today")


def test_segments_carry_the_pointer_across_the_recording():
  lp = _posteriors(_frames("one two") + _frames("three four"))
  mid = len(_frames("one two")) * 0.02
  words = ctc_align.words_of(["one two three four"], _Alphabet)
  ctc_align.align(lp, 0.02, [(0.0, mid), (mid, len(lp) * 0.02)], words,
                  _Alphabet)
  assert all(w.aligned for w in words)
  assert words[2].start > mid > words[1].end


def test_clustering_finds_the_number_of_voices():
  rng = np.random.default_rng(1)
  a = rng.normal(0, 0.3, (12, 8)) + 3.0
  b = rng.normal(0, 0.3, (9, 8)) - 3.0
  x = np.concatenate([a, b])[rng.permutation(21)]
  labels = speaker_clusters.cluster(x)
  assert len(set(labels)) == 2 and labels[0] == 0
  same = (x[:, 0] > 0)
  assert all((labels == labels[0]) == (same == same[0]))
  assert set(speaker_clusters.cluster(x, num_speakers=3)) == {0, 1, 2}
  noise = speaker_clusters.standardize(rng.normal(0, 1, (15, 8)))
  assert set(speaker_clusters.cluster(noise)) == {0}


def test_voice_vectors_tell_two_pitches_apart():
  t = np.arange(SR) / SR

  def voice(f0, seed):
    r = np.random.default_rng(seed)
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8))
    return (0.1 * x * (1 + 0.1 * r.standard_normal(t.size))
            ).astype(np.float32)
  vecs = np.stack([speaker_clusters.voice_vector(voice(f, s), SR)
                   for s, f in enumerate([110, 112, 220, 108, 225, 218])])
  labels = speaker_clusters.cluster(speaker_clusters.standardize(vecs),
                                    num_speakers=2)
  assert list(labels) == [0, 0, 1, 0, 1, 1]


def _word(i, text, start, end, line=0, aligned=True, score=0.9):
  return ctc_align.Word(i, text, line, np.asarray([1]), start, end, score,
                        aligned)


def test_turns_cut_at_speaker_changes_and_long_pauses():
  words = [_word(0, "a", 1.0, 1.5), _word(1, "b", 1.6, 2.0),
           _word(2, "c", 2.1, 2.5, line=1),
           _word(3, "d", 4.5, 5.0, line=1),          # 2 s pause: new turn
           _word(4, "e", 0.0, 0.0, line=1, aligned=False, score=0.0)]
  opts = turn_cutting.CutOptions(long_pause_s=1.5, min_turn_score=0.5,
                                 edge_search_s=0.0)
  groups = turn_cutting.tagged_groups(words, ["A", "B"], opts)
  assert [(s, [w.text for w in ws]) for s, ws in groups] == [
      ("A", ["a", "b"]), ("B", ["c"]), ("B", ["d", "e"])]
  energy = np.full(700, -80.0)
  turns = turn_cutting.make_turns(groups, energy, -40.0, 7.0, opts)
  assert [t.kept for t in turns] == [True, True, False]
  assert turns[2].excluded == "low_score" and turns[2].score == 0.45
  # Context pads stop half way to the neighbour.
  assert turns[0].start == pytest.approx(0.85)
  assert turns[0].end == pytest.approx(2.05)
  assert turns[1].start == pytest.approx(2.05)


def test_turn_edges_move_to_where_the_sound_starts():
  energy = np.full(500, -80.0)
  energy[95:260] = -20.0               # sound from 0.95 s to 2.6 s
  words = [_word(0, "a", 1.1, 1.6), _word(1, "b", 1.7, 2.45)]
  opts = turn_cutting.CutOptions(edge_search_s=0.25, pad_s=0.0)
  turns = turn_cutting.make_turns([("A", words)], energy, -40.0, 5.0, opts)
  assert turns[0].speech_start == pytest.approx(0.95)
  assert turns[0].speech_end == pytest.approx(2.6)


def _prepare_cli(manifest, data_dir):
  # No aligner is named: bad recordings are found before any model loads
  # (were they not, the default one would be built in data_dir and the
  # test would time out).
  proc = subprocess.run(
      [sys.executable, "-m", "csm_jax.prepare", "--dataset=recordings",
       f"--manifest={manifest}", f"--data_dir={data_dir}"],
      capture_output=True, text=True, timeout=120,
      env={**os.environ, "CSM_JAX_DATA_DIR": str(data_dir)})
  assert proc.returncode == 1, proc.stderr
  assert "Traceback" not in proc.stderr
  return proc.stderr.strip().splitlines()[-1], proc.stdout.splitlines()


def test_command_line_names_the_bad_file_in_one_line(tmp_path):
  (tmp_path / "t.txt").write_text("A: hello there\n")
  path = _write_manifest(tmp_path / "m.jsonl", [
      {"recording_id": "x", "audio": "missing.wav", "transcript": "t.txt"}])
  assert _prepare_cli(path, tmp_path / "data")[0] == (
      "error: recording rejected: missing audio: no audio file for "
      f"{tmp_path / 't.txt'} ({tmp_path / 'missing.wav'})")
  # Every kind of bad recording at once: still one line, naming each file.
  sf.write(tmp_path / "ok.wav", np.zeros(SR, np.float32), SR)
  (tmp_path / "bad.wav").write_bytes(b"RIFF but not really a wave file" * 9)
  (tmp_path / "empty.txt").write_text(" \n")
  path = _write_manifest(tmp_path / "all.jsonl", [
      {"recording_id": "a", "audio": "bad.wav", "transcript": "t.txt"},
      {"recording_id": "b", "audio": "missing.wav", "transcript": "t.txt"},
      {"recording_id": "c", "audio": "ok.wav", "transcript": "gone.txt"},
      {"recording_id": "d", "audio": "ok.wav", "transcript": "empty.txt"}])
  line, out = _prepare_cli(path, tmp_path / "data")
  assert line.startswith(f"error: {path}: every recording was rejected (4")
  rejected = [ln.strip() for ln in out if "recording rejected" in ln]
  for (what, where), got in zip((("corrupt", "bad.wav"),
                                 ("missing audio", "missing.wav"),
                                 ("missing transcript", "gone.txt"),
                                 ("empty transcript", "empty.txt")),
                                rejected):
    assert got.startswith(f"recording rejected: {what}: ")
    assert got.endswith(f"({tmp_path / where})")
  assert len(rejected) == 4


def test_an_aligner_of_your_own_is_checked_when_named():
  from csm_jax.eval import recording_aligner  # pylint: disable=g-import-not-at-top
  with pytest.raises(recording_aligner.AlignerError, match="expected"):
    recording_aligner.from_spec("no_colon_here")
  with pytest.raises(recording_aligner.AlignerError, match="cannot import"):
    recording_aligner.from_spec("csm_jax.no_such_module:make")
  # A factory whose object lacks the protocol is refused, naming what.
  with pytest.raises(recording_aligner.AlignerError,
                     match="lacks alphabet, blank, sample_rate"):
    recording_aligner.from_spec("builtins:object")
  with pytest.raises(recording_aligner.AlignerError,
                     match="not a recognizer training run|cannot be loaded"):
    recording_aligner.RecognizerAligner(os.path.dirname(__file__))
