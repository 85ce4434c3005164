"""Bad checkpoints, tokenizers and LoRA targets: one clear error, nothing written.

Each error names the file and the tensor (or the field); the output
directory is never created. One case runs the command line to check the
one-line message and the exit code.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from csm_jax.config import schema
from csm_jax.interop.convert import convert_csm, convert_mimi
from csm_jax.interop.safetensors_io import ConversionError, read_tensors
from tests.interop.conftest import small_csm_config
from tests.interop.tokenizer_file import write_llama3_like_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def write_safetensors(path, tensors):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()},
            str(path))


@pytest.fixture(scope="module")
def csm_tensors(csm_file):
  return {k: np.array(v) for k, v in read_tensors(str(csm_file)).items()}


def convert(path, out, **kw):
  return convert_csm(str(path), str(out), config=small_csm_config(), **kw)


def test_truncated_file(csm_file, tmp_path):
  cut = tmp_path / "cut.safetensors"
  data = csm_file.read_bytes()
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(ConversionError, match=r"cut\.safetensors: tensor "
                     r"'.+' needs bytes .* truncated"):
    convert(cut, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_corrupt_header(tmp_path):
  bad = tmp_path / "bad.safetensors"
  bad.write_bytes((20).to_bytes(8, "little") + b"{not json at all!!}" + b"x")
  with pytest.raises(ConversionError, match="bad.safetensors: header is not "
                     "valid JSON"):
    convert(bad, tmp_path / "out")
  garbage = tmp_path / "garbage.safetensors"
  garbage.write_bytes(os.urandom(64))
  with pytest.raises(ConversionError, match="garbage.safetensors: header "
                     "length"):
    convert(garbage, tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_checkpoint_of_another_model(mimi_file, csm_file, tmp_path):
  with pytest.raises(ConversionError, match=r"mimi\.safetensors: not a CSM "
                     r"checkpoint.*backbone\.layers\.0\.attn\.q_proj\.weight"):
    convert(mimi_file, tmp_path / "out")
  with pytest.raises(ConversionError, match=r"model\.safetensors: not a Mimi "
                     "checkpoint"):
    convert_mimi(str(csm_file), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


def test_shape_mismatch_and_unexpected_name(csm_tensors, tmp_path):
  t = dict(csm_tensors)
  t["decoder.layers.1.mlp.w2.weight"] = t["decoder.layers.1.mlp.w2.weight"][
      :, :-1]
  t["backbone.layers.0.attn.extra_proj.weight"] = np.zeros((2, 2), np.float32)
  path = tmp_path / "odd.safetensors"
  write_safetensors(path, t)
  with pytest.raises(ConversionError) as e:
    convert(path, tmp_path / "out")
  msg = str(e.value)
  assert "odd.safetensors" in msg
  assert "decoder.layers.1.mlp.w2.weight: (32, 63), expected (32, 64)" in msg
  assert "unexpected name: backbone.layers.0.attn.extra_proj.weight" in msg
  assert not (tmp_path / "out").exists()


def test_missing_tensor(csm_tensors, tmp_path):
  t = {k: v for k, v in csm_tensors.items() if k != "audio_head"}
  path = tmp_path / "partial.safetensors"
  write_safetensors(path, t)
  with pytest.raises(ConversionError, match=r"partial\.safetensors.*missing: "
                     r"audio_head \(31, 32, 2051\)"):
    convert(path, tmp_path / "out")


def test_tokenizer_of_another_vocabulary(csm_file, tmp_path):
  tok = write_llama3_like_tokenizer(tmp_path / "small.json", base_vocab=1000,
                                    n_special=2)
  with pytest.raises(ConversionError, match=r"small\.json: a tokenizer of "
                     r"1002 ids.*text_embeddings\.weight\) has 128256 rows"):
    convert(csm_file, tmp_path / "out", tokenizer=tok)
  (tmp_path / "notjson.json").write_text("{")
  with pytest.raises(ConversionError, match="notjson.json: not a readable"):
    convert(csm_file, tmp_path / "out", tokenizer=str(tmp_path /
                                                      "notjson.json"))
  assert not (tmp_path / "out").exists()


def test_a_directory_or_another_kind_of_file(csm_file, tmp_path):
  model_dir = tmp_path / "csm-1b"
  model_dir.mkdir()
  (model_dir / "config.json").write_text("{}")
  (model_dir / "ckpt.pt").write_bytes(b"")
  with pytest.raises(ConversionError, match=r"csm-1b: a directory, not a "
                     r"checkpoint file; give the file itself, e\.g\. "
                     r".*csm-1b/ckpt\.pt"):
    convert(model_dir, tmp_path / "out")
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ConversionError, match=r"empty: a directory without a "
                     r"checkpoint file \(none ending in \.safetensors"):
    convert_mimi(str(empty), str(tmp_path / "out"))
  with pytest.raises(ConversionError, match="empty: a directory without"):
    convert(csm_file, tmp_path / "out", mimi=str(empty))
  exported = tmp_path / "exported"
  exported.mkdir()
  (exported / "export.json").write_text("{}")
  with pytest.raises(ConversionError, match="exported: a csm_jax export, not "
                     "a PyTorch checkpoint: it needs no conversion"):
    convert(exported, tmp_path / "out")
  import torch  # pylint: disable=g-import-not-at-top
  torch.save(torch.zeros(3), tmp_path / "tensor.pt")
  with pytest.raises(ConversionError, match=r"tensor\.pt: holds a Tensor, "
                     "not a state dict of tensors"):
    convert(tmp_path / "tensor.pt", tmp_path / "out")
  (tmp_path / "tokenizer.json").write_text("{}")
  with pytest.raises(ConversionError, match=r"tokenizer\.json: unknown "
                     "checkpoint format"):
    convert(tmp_path / "tokenizer.json", tmp_path / "out")
  assert not (tmp_path / "out").exists()


def test_lora_target_that_matches_no_layer():
  c = small_csm_config()
  c.train.lora.rank = 4
  c.train.lora.targets = "attn,fnn"
  with pytest.raises(schema.ConfigError, match=r"config\.train\.lora\.targets"
                     r": 'fnn' matches no layer"):
    schema.validate(c)
  c.train.lora.targets = "decoder.mlp.q"
  with pytest.raises(schema.ConfigError, match="'decoder.mlp.q' matches no"):
    schema.validate(c)
  c.train.lora.targets = "decoder.attn, q"
  schema.validate(c)


@pytest.mark.parametrize("weights,says", [
    ("mimi", "mimi.safetensors: not a CSM"),
    ("directory", "a directory, not a checkpoint file; give the file itself"),
])
def test_command_line_reports_one_line(mimi_file, tmp_path, weights, says):
  out = tmp_path / "out"
  if weights == "mimi":
    weights = mimi_file
  else:
    weights = mimi_file.parent
  p = subprocess.run(
      [sys.executable, "-m", "csm_jax.convert", "csm",
       f"--weights={weights}", f"--out={out}"], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert p.returncode == 1, p.stderr
  last = p.stderr.strip().splitlines()[-1]
  assert last.startswith("error: ") and says in last, last
  assert "Traceback" not in p.stderr
  assert not out.exists()
