"""manifest_dialogues: parsing, per-reason rejection reports, the all-bad
error, grain reading, and the Beam (DirectRunner) build."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from csm_jax.data.corpora import ingest_report
from csm_jax.data.corpora import manifest
from csm_jax.data.corpora import manifest_builder as tfds_manifest
from csm_jax.data.text_alignment import turn_timing

SR = 16000


def tone(seconds=0.5, f0=180.0, amp=0.3, sr=SR):
  t = np.arange(int(seconds * sr)) / sr
  # A vibrato tone: voiced, never silent, never clipped.
  return (amp * np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 4 * t))
          ).astype(np.float32)


def write_jsonl(path, rows, raw_lines=()):
  with open(path, "wb") as f:
    for r in rows:
      f.write(json.dumps(r).encode("utf-8") + b"\n")
    for line in raw_lines:
      f.write(line + b"\n")


def good_turn(path, speaker, text, **kw):
  return {"speaker": speaker, "text": text, "audio": path, **kw}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """A manifest with good turns plus one turn of every bad kind."""
  d = tmp_path_factory.mktemp("corpus")
  w = d / "wav"
  w.mkdir()
  sf.write(w / "a.wav", tone(0.5, 160), SR)
  sf.write(w / "b.wav", tone(0.6, 220), SR, subtype="FLOAT")
  # One long stereo recording, a speaker per channel, cut by start/end.
  stereo = np.zeros((SR * 2, 2), np.float32)
  stereo[: SR, 0] = tone(1.0, 150)
  stereo[SR:, 1] = tone(1.0, 240)
  sf.write(w / "call.wav", stereo, SR)
  sf.write(w / "silent.wav", np.zeros(SR // 2, np.float32), SR)
  nan = tone(0.5)
  nan[100] = np.nan
  sf.write(w / "nan.wav", nan, SR, subtype="FLOAT")
  sf.write(w / "clipped.wav", np.clip(tone(0.5, amp=3.0), -1, 1), SR)
  (w / "empty.wav").write_bytes(b"")
  (w / "notaudio.wav").write_bytes(b"this is a text file, not a wav\n" * 40)
  sf.write(w / "short.wav", tone(0.02), SR)
  rows = [
      {"conversation_id": "good-1", "split": "train", "turns": [
          good_turn("wav/a.wav", "alice", "Hello there.", emotion="happiness"),
          good_turn("wav/b.wav", "bob", "Hi, how are you?",
                    word_starts=[0.0, 0.15, None, 0.4]),
          good_turn("wav/silent.wav", "alice", "Anyone?"),             # silent
          good_turn("wav/a.wav", "alice", "I am fine.", emotion="calm"),
      ]},
      {"conversation_id": "call-2", "split": "validation", "turns": [
          good_turn(str(w / "call.wav"), 7, "First speaker.", start=0.0,
                    end=1.0, channel=0),
          good_turn("wav/call.wav", 8, "Second speaker.", start=1.0,
                    end=2.0, channel=1),
          good_turn("wav/call.wav", 8, "Past the end.", start=1.5,
                    end=9.0, channel=1),                          # bad_segment
          good_turn("wav/call.wav", 8, "No such channel.", start=0.0,
                    end=1.0, channel=5),                          # bad_segment
      ]},
      {"conversation_id": "bad-3", "turns": [
          good_turn("wav/nan.wav", "c", "Not a number."),          # non_finite
          good_turn("wav/clipped.wav", "c", "Too loud."),           # clipped
          good_turn("wav/empty.wav", "c", "Zero bytes."),           # empty
          good_turn("wav/notaudio.wav", "c", "Text file."),         # corrupt
          good_turn("wav/missing.wav", "c", "Gone."),               # missing
          good_turn("wav/a.wav", "c", "   "),                       # empty_text
          good_turn("wav/short.wav", "c", "Too short."),            # too_short
      ]},
  ]
  path = d / "calls.jsonl"
  # A transcript that is not valid UTF-8 (byte 0xff) on its own line.
  bad_utf8 = (b'{"conversation_id": "bad-4", "turns": [{"speaker": "d", '
              b'"text": "caf\xff", "audio": "wav/a.wav"}]}')
  write_jsonl(path, rows, [bad_utf8])
  return d, path


EXPECTED = {"bad_segment": 2, "bad_text": 1, "clipped": 1, "corrupt": 1,
            "empty": 1, "empty_text": 1, "missing": 1, "non_finite": 1,
            "silent": 1, "too_short": 1}


@pytest.fixture(scope="module")
def built(corpus, tmp_path_factory):
  _, path = corpus
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  b = tfds_manifest.prepare(str(path), data_dir=data_dir)
  return b, data_dir


def test_bad_turns_counted_per_reason_and_reported(built, capsys):
  b, _ = built
  report_path = os.path.join(b.data_dir, ingest_report.REPORT_NAME)
  with open(report_path) as f:
    report = json.load(f)
  assert report["rejected_by_reason"] == EXPECTED
  assert report["kept"] == 5 and report["turns"] == 5 + sum(EXPECTED.values())
  files = {os.path.basename(r["audio"]): r["reason"]
           for r in report["rejected_turns"]}
  assert files["nan.wav"] == "non_finite"
  assert files["notaudio.wav"] == "corrupt"
  assert files["missing.wav"] == "missing"
  assert files["silent.wav"] == "silent"


def test_examples_and_grain(built):
  _, data_dir = built
  train = tfds_manifest.grain_dataset("train", "calls", data_dir)
  val = tfds_manifest.data_source("validation", "calls", data_dir)
  assert len(train) == 3 and len(val) == 2
  turns = sorted((train[i] for i in range(len(train))),
                 key=lambda e: int(e["turn_index"]))
  assert [int(t["turn_index"]) for t in turns] == [0, 1, 2]
  assert [int(t["source_turn_index"]) for t in turns] == [0, 1, 3]
  assert all(int(t["num_turns"]) == 3 for t in turns)
  assert [int(t["speaker_id"]) for t in turns] == [0, 1, 0]
  assert turns[1]["speaker_name"] == b"bob"
  assert turns[0]["emotion_name"] == b"happiness"
  names = tfds_manifest.EMOTION_NAMES
  assert names[turns[0]["emotion"]] == "happy"
  assert names[turns[1]["emotion"]] == "other"
  for t in turns:
    assert t["audio"].dtype == np.int16 and t["sample_rate"] == 24000
    assert t["audio"].size / 24000 == pytest.approx(
        t["end_s"] - t["start_s"], abs=1e-3)
    assert np.isfinite(t["prosody"]).all() and t["semantic"].shape == (128,)
  # Word starts given by the manifest: the aligned stream's phoneme
  # events, each word's phonemes from its start; none given, no timing.
  assert turn_timing(turns[0]) is None
  symbols, starts = turn_timing(turns[1])
  np.testing.assert_allclose(turns[1]["word_starts"][[0, 1, 3]],
                             [0.0, 0.15, 0.4])
  assert np.isnan(turns[1]["word_starts"][2])
  assert symbols[0] == "h" and starts[0] == 0.0
  assert symbols[symbols.index("_") + 1] == "h" and \
      starts[symbols.index("_") + 1] == pytest.approx(0.15)
  assert (np.diff(starts) >= 0).all() and starts[-1] < 0.6
  # "are" (start unknown) starts halfway between "how" and "you".
  assert np.isclose(starts, 0.275).any() and np.isclose(starts, 0.4).any()
  # Channel cuts keep the recording's clock.
  seg = sorted((val[i] for i in range(len(val))),
               key=lambda e: int(e["turn_index"]))
  assert [float(s["start_s"]) for s in seg] == [0.0, 1.0]
  assert seg[0]["speaker_name"] == b"7" and int(seg[1]["speaker_id"]) == 1
  assert seg[1]["audio"].size == pytest.approx(24000, abs=2)


def test_all_bad_manifest_fails_naming_it(corpus, tmp_path):
  d, _ = corpus
  bad = d / "all_bad.jsonl"
  write_jsonl(bad, [{"conversation_id": "x", "turns": [
      good_turn("wav/silent.wav", "a", "Quiet."),
      good_turn("wav/missing.wav", "a", "Gone.")]}])
  with pytest.raises(manifest.ManifestError, match="all_bad.jsonl.*every "
                     "turn was rejected"):
    tfds_manifest.prepare(str(bad), data_dir=str(tmp_path))
  # Every turn failing the cheap checks fails before any decoding too.
  worse = d / "worse.jsonl"
  write_jsonl(worse, [{"conversation_id": "y", "turns": [
      good_turn("wav/missing.wav", "a", "Gone.")]}])
  with pytest.raises(manifest.ManifestError, match="worse.jsonl.*missing"):
    tfds_manifest.prepare(str(worse), data_dir=str(tmp_path))


@pytest.mark.parametrize("line, message", [
    (b"{not json", "not valid JSON"),
    (b'{"turns": []}', "missing field 'conversation_id'"),
    (b'{"conversation_id": "a", "turns": [{"speaker": "s", "text": "t"}]}',
     r"turns\[0\]: missing field 'audio'"),
    (b'{"conversation_id": "a", "turns": [{"speaker": "s", "text": "t", '
     b'"audio": "x.wav", "start": "0.5"}]}', "field 'start' must be"),
    (b'{"conversation_id": "a", "split": "test", "turns": [{"speaker": 1, '
     b'"text": "t", "audio": "x.wav"}]}', "field 'split' must be"),
    (b'{"conversation_id": "a", "turns": [{"speaker": 1, "text": "a b", '
     b'"audio": "x.wav", "word_starts": [0.0]}]}',
     "'word_starts' has 1 entries for the 2 words"),
    (b'{"conversation_id": "a", "turns": [{"speaker": 1, "text": "a b", '
     b'"audio": "x.wav", "word_starts": [0.5, 0.2]}]}',
     r"'word_starts'\[1\] = 0.2 is before"),
    (b'{"conversation_id": "a", "turns": [{"speaker": 1, "text": "a b", '
     b'"audio": "x.wav", "word_starts": [0.0, "1"]}]}',
     r"'word_starts'\[1\] must be a number or null"),
])
def test_malformed_manifest_names_line_and_field(tmp_path, line, message):
  p = tmp_path / "m.jsonl"
  write_jsonl(p, [], [b"", line])
  with pytest.raises(manifest.ManifestError, match=f"m.jsonl:2: .*{message}"):
    list(manifest.read_manifest(str(p)))


def test_duplicate_ids_and_missing_manifest(tmp_path):
  row = {"conversation_id": "a", "turns": [good_turn("x.wav", 0, "t")]}
  p = tmp_path / "dup.jsonl"
  write_jsonl(p, [row, row])
  with pytest.raises(manifest.ManifestError, match="already used on line 1"):
    list(manifest.read_manifest(str(p)))
  with pytest.raises(manifest.ManifestError, match="does not exist"):
    list(manifest.read_manifest(str(tmp_path / "nope.jsonl")))


def test_emotion_mapping_and_config_name():
  assert tfds_manifest.emotion_class("No Emotion") == "neutral"
  assert tfds_manifest.emotion_class("sadness") == "sad"
  assert tfds_manifest.emotion_class("disgust") == "other"
  assert tfds_manifest.emotion_class("") == "other"
  assert tfds_manifest.config_name("/x/My Calls.v2.jsonl") == "my_calls_v2"


def test_beam_direct_runner(corpus, tmp_path):
  pytest.importorskip("apache_beam", reason="apache-beam is not installed; "
                      "the Beam build path cannot be exercised")
  d, _ = corpus
  path = d / "beam_small.jsonl"
  write_jsonl(path, [
      {"conversation_id": "b1", "split": "train", "turns": [
          good_turn("wav/a.wav", "x", "One."),
          good_turn("wav/nan.wav", "y", "Bad.")]},
      {"conversation_id": "b2", "split": "validation", "turns": [
          good_turn("wav/b.wav", "y", "Two.")]}])
  b = tfds_manifest.prepare(str(path), data_dir=str(tmp_path),
                            beam_runner="DirectRunner")
  assert len(b.as_data_source("train")) == 1
  assert len(b.as_data_source("validation")) == 1
  with open(os.path.join(b.data_dir, ingest_report.REPORT_NAME)) as f:
    report = json.load(f)
  assert report["rejected_by_reason"] == {"non_finite": 1}
  assert report["kept"] == 2
  # On Beam too, a manifest without a usable turn is a ManifestError.
  bad = d / "beam_bad.jsonl"
  write_jsonl(bad, [{"conversation_id": "z", "split": "train", "turns": [
      good_turn("wav/silent.wav", "a", "Quiet.")]}])
  with pytest.raises(manifest.ManifestError, match="beam_bad.jsonl"):
    tfds_manifest.prepare(str(bad), data_dir=str(tmp_path),
                          beam_runner="DirectRunner")


def test_prepare_cli_needs_its_inputs(tmp_path):
  # The library function, not the entrypoint module (whose flags would
  # collide with other entrypoints imported by the same test process).
  from csm_jax.data.corpora import registry as prepare
  with pytest.raises(ValueError, match="needs --manifest"):
    prepare.prepare_dataset("manifest_dialogues", "default", str(tmp_path))
  with pytest.raises(ValueError, match="needs --manual_dir"):
    prepare.prepare_dataset("dailytalk", "default", str(tmp_path))
