"""Prepared corpora and token caches notice when their inputs change."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from csm_jax.data.corpora import manifest_builder as mb
from csm_jax.data.examples.dialogue import TokenCache, corpus_fingerprint
from tests.faults import harness

SR = 16000


def _tone(f0, seconds=0.5):
  t = np.arange(int(seconds * SR)) / SR
  return (0.3 * np.sin(2 * np.pi * f0 * t + 3 * np.sin(2 * np.pi * 4 * t))
          ).astype(np.float32)


def _manifest(d, texts):
  rows = [{"conversation_id": f"c{i}", "split": split, "turns": [
      {"speaker": "a", "text": texts[0], "audio": "a.wav"},
      {"speaker": "b", "text": texts[1], "audio": "b.wav"}]}
          for i, split in enumerate(("train", "validation"))]
  path = d / "convs.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def _texts(b, split="train"):
  src = b.as_data_source(split=split)
  return sorted(src[i]["text"].decode() for i in range(len(src)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  d = tmp_path_factory.mktemp("corpus")
  sf.write(d / "a.wav", _tone(160), SR)
  sf.write(d / "b.wav", _tone(220), SR)
  manifest = _manifest(d, ["Hello there.", "Hi!"])
  data = str(d / "data")
  b = mb.prepare(manifest, "mine", data)
  return d, manifest, data, b


def test_an_edited_manifest_is_refused_then_rebuilt(corpus, capsys):
  d, manifest, data, b = corpus
  assert _texts(b) == ["Hello there.", "Hi!"]
  before = corpus_fingerprint(os.fspath(b.data_dir), "train")
  _manifest(d, ["Hello again.", "Hi!"])
  # Training reads the build: refused, with the command that rebuilds it.
  mb._CHECKED.clear()  # pylint: disable=protected-access
  with pytest.raises(mb.ManifestError, match="is stale: its conversations "
                     ".* changed since it was built; rebuild it with .*"
                     "--manifest="):
    mb.data_source("train", "mine", data)
  capsys.readouterr()
  b2 = mb.prepare(manifest, "mine", data)
  assert "out of date" in capsys.readouterr().out
  assert _texts(b2) == ["Hello again.", "Hi!"]
  assert mb.data_source("train", "mine", data) is not None
  # A token cache of the old build is never read for the new one.
  assert corpus_fingerprint(os.fspath(b2.data_dir), "train") != before


def test_changed_audio_is_noticed(corpus):
  d, manifest, data, _ = corpus
  old = mb.read_inputs(os.fspath(mb.builder(name="mine",
                                            data_dir=data).data_dir))
  sf.write(d / "b.wav", _tone(260, 0.6), SR)
  new = mb.manifest_record(manifest)
  diff = mb.changes(old, new)
  assert diff and "audio files" in diff and "conversations" not in diff


def test_prepare_cli_rebuilds_a_changed_manifest(corpus):
  d, manifest, data, _ = corpus
  _manifest(d, ["Hello from the command line.", "Hi!"])
  r = harness.cli("csm_jax.prepare", "--dataset=manifest_dialogues",
                  f"--manifest={manifest}", "--name=mine",
                  f"--data_dir={data}", "--num_workers=0")
  harness.ok(r)
  assert "out of date" in r.stdout and "ready in" in r.stdout
  assert _texts(mb.builder(name="mine", data_dir=data)) == [
      "Hello from the command line.", "Hi!"]


def test_token_cache_names_the_corpus_build(tmp_path):
  a = TokenCache.path(str(tmp_path), "codec1", "train", "build1")
  b = TokenCache.path(str(tmp_path), "codec1", "train", "build2")
  assert a != b
  src = [{"audio": np.zeros(160, np.int16), "sample_rate": SR}] * 2
  TokenCache.load_or_build(src, lambda x: np.zeros((2, 3)), a, SR)
  TokenCache.load_or_build(src, lambda x: np.ones((2, 3)), b, SR)
  # The old build's cache is removed; the new one holds the new codes.
  assert not os.path.exists(a)
  assert TokenCache.load_or_build(src, None, b, SR).codes[0].max() == 1
