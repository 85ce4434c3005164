"""SentencePiece tokenizer: CSM turn format, speaker tags, round trips, CLI."""

import json
import os
import subprocess
import sys

import pytest

from csm_jax.data.synthetic import text_gen
from csm_jax.data.synthetic import voices
from csm_jax.data.tokenizer import TextTokenizer, TokenizerError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _texts(n=150):
  return [t for s in range(n)
          for t in text_gen.sample_dialogue(s, voices.ARC_NAMES[s % 4],
                                            ["neutral"] * 6)]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
  path = tmp_path_factory.mktemp("tok") / "tok.model"
  TextTokenizer.train(_texts(), 1000, str(path), num_speakers=16)
  return TextTokenizer.load(str(path))


def test_specials_and_size(tok):
  assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
  assert 400 < tok.vocab_size <= 1000
  assert tok.num_speakers == 16


@pytest.mark.parametrize("text", [
    "Hello there, Nora!", "I can't believe it... really?",
    "Zürich costs 1234 francs ☃", "Mm, right."])
def test_round_trip(tok, text):
  for spk in (0, 7, 15):
    ids = tok.encode_turn(spk, text)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == f"[{spk}]{text}"
    assert tok.unk_id not in ids


def test_speaker_tag_is_one_stable_token(tok):
  tags = {tok.encode_turn(s, "hello", False, False)[0] for s in range(16)}
  assert len(tags) == 16
  for s in (3, 12):
    for text in ("Hi.", "[unrelated] text", "9 lives"):
      ids = tok.encode_turn(s, text, add_bos=False, add_eos=False)
      assert ids[0] == tok.speaker_token_id(s)
      assert tok.pieces(ids[:1]) == [f"[{s}]"]
  # The tag inside running text is the same single token.
  assert tok.speaker_token_id(4) in tok.encode("so [4] said")


def test_errors(tok, tmp_path):
  with pytest.raises(TokenizerError, match="speaker id 16"):
    tok.encode_turn(16, "hi")
  with pytest.raises(TokenizerError, match="too small"):
    TextTokenizer.train(["a b c"], 100, None, num_speakers=16)
  bad = tmp_path / "bad.model"
  bad.write_bytes(b"not a model")
  with pytest.raises(TokenizerError, match="bad.model"):
    TextTokenizer.load(str(bad))
  with pytest.raises(FileNotFoundError):
    TextTokenizer.load(str(tmp_path / "missing.model"))


def test_cli_train(tmp_path):
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  texts = _texts(60)
  (corpus / "a.txt").write_text("\n".join(texts[:200]), encoding="utf-8")
  with open(corpus / "b.jsonl", "w", encoding="utf-8") as f:
    for t in texts[200:]:
      f.write(json.dumps({"text": t, "speaker": 1}) + "\n")
  out = tmp_path / "cli.model"
  env = dict(os.environ, PYTHONPATH=ROOT)
  r = subprocess.run([sys.executable, "-m", "csm_jax.text", "train",
                      f"--corpus_dir={corpus}", "--vocab_size=700",
                      f"--out={out}", "--num_speakers=8"],
                     capture_output=True, text=True, env=env, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  tok = TextTokenizer.load(str(out))
  assert tok.num_speakers == 8
  assert tok.decode(tok.encode_turn(2, texts[0])) == f"[2]{texts[0]}"
