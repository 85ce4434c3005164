"""Convert -> generate, and convert -> LoRA fine-tune -> export -> generate.

From random-weight reference checkpoints written by the test (a small CSM
with Mimi's real shape as its codec and a Llama-3-shaped tokenizer.json):
``python -m csm_jax.convert csm`` writes an export that
``python -m csm_jax.generate`` speaks with; then a LoRA run fine-tunes that
export on a user's conversations (a manifest corpus) for a few steps on the
shared trainer, is exported with its adapters merged, and speaks too.
"""

import json
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from csm_jax.interop.convert import convert_csm
from csm_jax.store.export import export
from csm_jax.store.run_config import load_run_config
from tests.interop import references as refs
from tests.interop.conftest import SR, small_csm_config, speech_like

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SMALL = ",".join(
    [f"model.{stack}.{k}={v}" for stack, shape in (("backbone", refs.BACKBONE),
                                                   ("decoder", refs.DECODER))
     for k, v in zip(("width", "depth", "heads", "kv_heads", "mlp"), shape)]
    + [f"model.max_seq_len={refs.MAX_SEQ}", "data.seq_len=128"])


def run(*args):
  p = subprocess.run([sys.executable, "-m", *args], cwd=ROOT,
                     capture_output=True, text=True, timeout=900,
                     env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert p.returncode == 0, p.stderr[-3000:]
  return p.stdout


def check_wav(path):
  audio, sr = sf.read(str(path))
  assert sr == SR and audio.size >= 1920 and np.all(np.isfinite(audio))


def test_convert_then_generate(csm_file, mimi_file, tokenizer_json, tmp_path):
  out = tmp_path / "csm_export"
  info = json.loads(run(
      "csm_jax.convert", "csm", f"--weights={csm_file}", f"--out={out}",
      f"--tokenizer={tokenizer_json}", f"--mimi={mimi_file}",
      "--dtype=float32", f"--config=configs/csm_1b.py:{SMALL}"))
  assert info["files"] == ["tokenizer.json", "codec"]
  res = json.loads(run(
      "csm_jax.generate", f"--checkpoint={out}", "--text=Hello there.",
      "--speaker=0", f"--out={tmp_path / 'hello.wav'}", "--max_seconds=0.4",
      "--min_seconds=0.16", "--seed=1"))
  assert res
  check_wav(tmp_path / "hello.wav")


def write_manifest(d):
  """Two speakers' conversations (tones standing in for speech)."""
  wav = d / "wav"
  wav.mkdir()
  rows, n = [], 0
  for conv, split in (("c1", "train"), ("c2", "train"), ("c3", "validation")):
    turns = []
    for i, (speaker, text) in enumerate((("ana", "Hello there."),
                                         ("ben", "How are you?"),
                                         ("ana", "I am fine, thank you."))):
      f = wav / f"{conv}_{i}.wav"
      sf.write(f, speech_like(0.4, seed=n)[0], SR)
      n += 1
      turns.append({"speaker": speaker, "text": text, "audio": str(f)})
    rows.append({"conversation_id": conv, "split": split, "turns": turns})
  path = d / "mine.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def test_lora_finetune_export_generate(csm_file, mimi_file, tokenizer_json,
                                       tmp_path):
  from csm_jax.data.corpora import registry  # pylint: disable=g-import-not-at-top
  from csm_jax.inference import cli  # pylint: disable=g-import-not-at-top
  from csm_jax.inference.generator import Sampling  # pylint: disable=g-import-not-at-top
  from csm_jax.inference.loading import load_generator  # pylint: disable=g-import-not-at-top
  from csm_jax.training.run import train_and_evaluate  # pylint: disable=g-import-not-at-top
  converted = tmp_path / "converted"
  convert_csm(str(csm_file), str(converted), config=small_csm_config(),
              tokenizer=tokenizer_json, mimi=str(mimi_file), dtype="float32")
  data_dir = tmp_path / "data"
  registry.prepare_dataset("manifest_dialogues", data_dir=str(data_dir),
                           manifest=str(write_manifest(tmp_path)),
                           name="mine")
  # The converted model's own config, pointed at the user's corpus; the
  # codec and tokenizer come from the export (train.init_from).
  c = load_run_config(str(converted))
  d, t = c.data, c.train
  d.corpus, d.corpus_size, d.data_dir = "manifest_dialogues", "mine", str(
      data_dir)
  d.seq_len, d.batch_size, d.context_turns = 64, 2, 1
  t.steps, t.warmup_steps, t.log_every, t.ckpt_every = 3, 1, 1, 3
  t.eval_every, t.eval_steps = 1000, 1
  t.init_from = str(converted)
  t.lora.rank, t.lora.targets = 4, "attn,mlp"
  out = train_and_evaluate(c, str(tmp_path / "run"))
  assert out["step"] == 3 and np.isfinite(out["loss"])
  export(str(tmp_path / "run"), str(tmp_path / "tuned"), dtype="float32")
  tuned = load_run_config(str(tmp_path / "tuned"))
  assert tuned.train.lora.rank == 0
  assert os.path.exists(tmp_path / "tuned" / "tokenizer.json")
  gen = load_generator(str(tmp_path / "tuned"))
  cli.speak(gen, "Hello there.", 0, [], Sampling(max_seconds=0.4,
                                                 min_seconds=0.16, seed=2),
            str(tmp_path / "tuned.wav"))
  check_wav(tmp_path / "tuned.wav")
