"""tfds build of the tiny corpus to ArrayRecord and reading it with grain."""

import os
import subprocess
import sys

import numpy as np
import pytest

from csm_jax.data import features
from csm_jax.data.corpora import synthetic as tfds_dialogues
from csm_jax.data.corpora import turns
from csm_jax.data.synthetic import voices

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  tfds_dialogues.prepare("tiny", d, num_workers=2, progress=False)
  return d


def test_array_record_files(data_dir):
  root = os.path.join(data_dir, "synthetic_dialogues", "tiny", "1.1.0")
  names = os.listdir(root)
  assert any(".array_record" in n and "train" in n for n in names)
  assert any(".array_record" in n and "validation" in n for n in names)


def test_grain_read_and_fields(data_dir):
  ds = tfds_dialogues.grain_dataset("train", "tiny", data_dir)
  assert len(ds) > 0
  ex = ds[0]
  assert ex["audio"].dtype == np.int16 and ex["audio"].ndim == 1
  assert ex["sample_rate"] == 24000
  assert ex["audio"].size / 24000 == pytest.approx(
      ex["end_s"] - ex["start_s"], abs=1e-3)
  assert ex["prosody"].shape == (len(features.PROSODY_FIELDS),)
  assert ex["semantic"].shape == (features.SEMANTIC_DIM,)
  assert 0 <= ex["emotion"] < len(voices.EMOTIONS)
  assert 0 <= ex["speaker_id"] < len(voices.SPEAKERS)
  assert ex["text"] and ex["conversation_id"]
  shuffled = tfds_dialogues.grain_dataset("train", "tiny", data_dir,
                                          shuffle_seed=1)
  assert len(shuffled) == len(ds)


def test_splits_disjoint_by_conversation_and_context(data_dir):
  ids = {}
  for split in ("train", "validation"):
    src = tfds_dialogues.data_source(split, "tiny", data_dir)
    index = turns.turn_positions(src)
    ids[split] = set(index)
    for cid, positions in index.items():
      recs = [src[p] for p in positions]
      assert [int(t["turn_index"]) for t in recs] == list(range(len(recs)))
      assert all(int(t["num_turns"]) == len(recs) for t in recs)
      starts = [float(t["start_s"]) for t in recs]
      assert starts == sorted(starts)
  assert ids["train"] and ids["validation"]
  assert not ids["train"] & ids["validation"]


def test_unprepared_size_names_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="csm_jax.prepare"):
    tfds_dialogues.data_source("train", "tiny", str(tmp_path))
  with pytest.raises(ValueError, match="unknown size"):
    tfds_dialogues.builder("huge", str(tmp_path))


def test_default_data_dir(monkeypatch):
  monkeypatch.setenv("CSM_JAX_DATA_DIR", "/tmp/somewhere")
  assert turns.default_data_dir() == "/tmp/somewhere"
  monkeypatch.delenv("CSM_JAX_DATA_DIR")
  assert turns.default_data_dir() == os.path.expanduser(
      "~/csm_jax_data")


def test_prepare_cli_help():
  r = subprocess.run([sys.executable, "-m", "csm_jax.prepare", "--help"],
                     capture_output=True, text=True, timeout=60,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  # absl's --help exits with status 1 after printing the usage.
  assert r.returncode in (0, 1), r.stderr
  assert "--size" in r.stdout and "synthetic_dialogues" in r.stdout


def test_tokenizer_cli_reads_prepared_dataset(data_dir, tmp_path):
  from csm_jax.data.tokenizer import read_corpus_texts
  texts = list(read_corpus_texts(data_dir))
  src = tfds_dialogues.data_source("train", "tiny", data_dir)
  assert len(texts) == len(src) and all(isinstance(t, str) for t in texts)


def test_turns_record_the_phonemes_espeak_speaks(data_dir):
  """Each turn's recorded phonemes are what eSpeak's phonemizer gives for
  its text (pauses and the palatal modifier ";" aside), starting in order
  within the turn's audio; eSpeak speaks some short word pairs as one word
  ("such a"), so there are at most as many recorded words as in the text."""
  from csm_jax.data import phonemes
  from csm_jax.data.synthetic import espeak
  src = tfds_dialogues.data_source("train", "tiny", data_dir)

  def sounds(symbols):
    return [s for s in symbols if phonemes.base_symbol(s) not in ("_", ";")]

  for i in range(min(len(src), 8)):
    ex = src[i]
    text = ex["text"].decode()
    symbols, starts = turns.phoneme_alignment(ex)
    voice = voices.speaker(int(ex["speaker_id"])).voice
    expected = [p for word in espeak.phonemize(text, voice) for p in word]
    assert sounds(symbols) == sounds(expected), text
    seconds = len(ex["audio"]) / int(ex["sample_rate"])
    assert np.all(np.diff(starts) >= 0) and 0 <= starts[0]
    assert starts[-1] <= seconds + 0.05
    words = np.asarray(ex["words"])
    assert 0.6 * len(text.split()) <= len(words) <= len(text.split()), text
    assert np.all(np.diff(words) > 0) and words[-1] < len(text)
    assert np.all(np.diff(ex["word_starts"]) >= 0)
    labels = phonemes.frame_labels(symbols, starts, int(seconds * 25), 0.04)
    assert (labels != phonemes.symbol_id("_")).mean() > 0.5
