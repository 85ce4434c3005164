"""Config presets load, sizes match the ladder, and bad values name their field."""

import os
import subprocess
import sys

import jax
import pytest
from flax import nnx

from csm_jax.config import ConfigError, validate
from csm_jax.config.presets import apply_overrides
from csm_jax.model.csm import CSM
from tests.foundation.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _load(name, arg=None):
  import importlib.util
  spec = importlib.util.spec_from_file_location(
      name, os.path.join(ROOT, "configs", f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def _params(config):
  shapes = jax.eval_shape(
      lambda: nnx.state(CSM(config.model, nnx.Rngs(params=0)), nnx.Param))
  return sum(x.size for x in jax.tree.leaves(shapes))


@pytest.mark.parametrize("name,low,high", [
    ("debug", 1e6, 1e7), ("tiny", 0.3e9, 0.45e9), ("small", 1.3e9, 1.8e9),
    ("medium", 6.5e9, 8e9), ("csm_1b", 1.0e9, 1.8e9)])
def test_presets_validate_and_have_their_size(name, low, high):
  c = _load(name)
  validate(c)
  n = _params(c)
  assert low <= n <= high, f"{name}: {n / 1e6:.1f}M parameters"


def test_csm_1b_has_sesames_shape():
  m = _load("csm_1b").model
  assert (m.backbone.width, m.backbone.depth, m.backbone.heads,
          m.backbone.kv_heads, m.backbone.mlp) == (2048, 16, 32, 8, 8192)
  assert (m.decoder.width, m.decoder.depth, m.decoder.heads,
          m.decoder.kv_heads, m.decoder.mlp) == (1024, 4, 8, 2, 8192)
  assert (m.text_vocab, m.audio_vocab, m.n_codebooks) == (128256, 2051, 32)
  assert m.rope_theta == 500_000 and m.rope_scaling == "llama3"
  assert m.rope_factor == 32


@pytest.mark.parametrize("override,field", [
    ("model.backbone.heads=5", "model.backbone.heads"),
    ("model.decoder.kv_heads=3", "model.decoder.kv_heads"),
    ("model.dtype=float8", "model.dtype"),
    ("model.remat=sometimes", "model.remat"),
    ("model.decoder_frame_fraction=0.0", "model.decoder_frame_fraction"),
    ("train.accum_steps=3", "train.accum_steps"),
    ("data.seq_len=4096", "data.seq_len"),
])
def test_bad_values_name_the_field(override, field):
  c = apply_overrides(tiny_config(), override)
  with pytest.raises(ConfigError) as e:
    validate(c, n_devices=1)
  assert str(e.value).startswith(f"config.{field}")


def test_mesh_must_fit_devices():
  c = tiny_config()
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 2, 2, 1
  with pytest.raises(ConfigError, match="mesh.*4 but 1 devices"):
    validate(c, n_devices=1)
  c.mesh.data = -1
  with pytest.raises(ConfigError, match="mesh.data"):
    validate(c, n_devices=3)
  c.mesh.data, c.mesh.fsdp = -1, 1
  validate(c, n_devices=4)  # -1 takes all remaining devices


def test_batch_must_divide_over_data_axes():
  c = tiny_config()
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 8, 1, 1
  with pytest.raises(ConfigError, match="data.batch_size"):
    validate(c, n_devices=8)


def test_unknown_override_keys_fail():
  with pytest.raises(ConfigError, match="train.stepz"):
    apply_overrides(tiny_config(), "train.stepz=3")
  with pytest.raises(ConfigError, match="modle"):
    apply_overrides(tiny_config(), "modle.dtype=float32")


def test_config_file_arg_overrides():
  c = _load("debug", "train.steps=7,model.remat=full")
  assert c.train.steps == 7 and c.model.remat == "full"


def test_cli_rejects_unknown_field(tmp_path):
  r = subprocess.run(
      [sys.executable, "-m", "csm_jax.train", "--config=configs/debug.py",
       f"--workdir={tmp_path}", "--config.train.stepz=3"],
      cwd=ROOT, capture_output=True, text=True, timeout=120)
  assert r.returncode != 0
  assert "stepz" in r.stderr
