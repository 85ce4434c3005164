"""The DailyTalk builder on a tiny tree written in DailyTalk's own layout."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from csm_jax.data.corpora import dailytalk as tfds_dailytalk
from csm_jax.data.corpora import ingest_report
from csm_jax.data.corpora import manifest
from csm_jax.data.corpora import manifest_builder as tfds_manifest

SR = 44100   # DailyTalk's recordings are 44.1 kHz


def tone(seconds, f0):
  t = np.arange(int(seconds * SR)) / SR
  return (0.25 * np.sin(2 * np.pi * f0 * t + 2 * np.sin(2 * np.pi * 5 * t))
          ).astype(np.float32)


# dialog -> [(turn, speaker, transcript or None for no .txt file, emotion)]
DIALOGS = {
    0: [(0, 1, "Hello, can I help you?", "no emotion"),
        (1, 0, "Yes, I'd like a ticket.", "happiness"),
        (2, 1, None, "no emotion")],                   # no transcript file
    4: [(0, 0, "It is raining again.", "sadness"),
        (1, 1, "Take my umbrella.", "surprise")],
    10: [(0, 1, "Where were you?", "anger"),
         (1, 0, "At work, sorry.", "fear")],
}


@pytest.fixture(scope="module")
def dailytalk_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("dailytalk")
  meta = {}
  for dialog, turns in DIALOGS.items():
    folder = root / "data" / str(dialog)
    folder.mkdir(parents=True)
    for turn, speaker, text, emotion in turns:
      base = folder / f"{turn}_{speaker}_d{dialog}"
      sf.write(f"{base}.wav", tone(0.4 + 0.1 * turn, 140 + 60 * speaker), SR)
      if text is not None:
        (folder / f"{base.name}.txt").write_text(text + "\n")
      meta.setdefault(str(dialog), {})[str(turn)] = {
          "speaker": speaker, "emotion": emotion, "text": text or ""}
    (folder / "notes.txt").write_text("not a turn\n")   # ignored
  (root / "metadata.json").write_text(json.dumps(meta))
  return root


def test_layout_to_conversations(dailytalk_root):
  convs = list(tfds_dailytalk.conversations(str(dailytalk_root)))
  assert [c.conversation_id for c in convs] == ["d0", "d4", "d10"]
  first = convs[0].turns
  assert [t.speaker for t in first] == ["1", "0", "1"]
  assert first[0].text == "Hello, can I help you?" and first[2].text == ""
  assert first[1].emotion == "happiness"
  assert first[1].audio.endswith(os.path.join("data", "0", "1_0_d0.wav"))


def test_builds_and_reads_with_grain(dailytalk_root, tmp_path):
  b = tfds_dailytalk.prepare(str(dailytalk_root), str(tmp_path))
  with open(os.path.join(b.data_dir, ingest_report.REPORT_NAME)) as f:
    report = json.load(f)
  assert report["rejected_by_reason"] == {"empty_text": 1}
  assert report["rejected_turns"][0]["audio"].endswith("2_1_d0.wav")
  assert report["kept"] == 6
  train = tfds_dailytalk.grain_dataset("train", str(tmp_path))
  val = tfds_dailytalk.grain_dataset("validation", str(tmp_path))
  assert len(train) + len(val) == 6
  # crc32("d4") % 10 == 9: d4 is the validation conversation.
  assert {bytes(val[i]["conversation_id"]) for i in range(len(val))} == {
      b"d4"}
  names = tfds_manifest.EMOTION_NAMES
  by_text = {bytes(e["text"]).decode(): e for e in
             (train[i] for i in range(len(train)))}
  hello = by_text["Hello, can I help you?"]
  assert names[hello["emotion"]] == "neutral"
  assert hello["speaker_name"] == b"1" and int(hello["speaker_id"]) == 0
  assert names[by_text["Where were you?"]["emotion"]] == "angry"
  ticket = by_text["Yes, I'd like a ticket."]
  assert int(ticket["speaker_id"]) == 1 and int(ticket["num_turns"]) == 2
  assert ticket["audio"].size == pytest.approx(0.5 * 24000, abs=2)


def test_missing_layout_is_a_clear_error(tmp_path):
  with pytest.raises(manifest.ManifestError, match="no data/ folder"):
    list(tfds_dailytalk.conversations(str(tmp_path)))


def test_unbuilt_names_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="--dataset=dailytalk"):
    tfds_dailytalk.grain_dataset("train", str(tmp_path))
