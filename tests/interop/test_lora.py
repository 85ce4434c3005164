"""LoRA fine-tuning on the shared trainer: adapters only, merged at export.

A tiny CSM is trained (full fine-tuning) and exported; a LoRA run starts
from that export (``train.init_from``), trains only ``nnx.LoRAParam``
adapters (the frozen weights ride in ``extra`` and come back bit-equal),
and its export merges the adapters into the weights: the merged model
computes what the adapted one does. ``--keep_adapters`` keeps them apart.
"""

import jax
import numpy as np
import pytest
from flax import nnx

from csm_jax.config import schema
from csm_jax.store import models
from csm_jax.store.adapters import merge_lora
from csm_jax.store.export import export
from csm_jax.store.restore import restore_params
from csm_jax.training.run import train_and_evaluate
from tests.foundation.tiny import tiny_config


def lora_config(init_from, **kw):
  c = tiny_config(train__steps=3, train__ckpt_every=3, train__lr=1e-2,
                  train__init_from=str(init_from), **kw)
  c.train.lora.rank, c.train.lora.alpha = 4, 8.0
  c.train.lora.targets = "attn,mlp"
  return c


def forward(model, seed=0):
  rng = np.random.default_rng(seed)
  b, t, n = 2, 24, model.n_codebooks
  audio = rng.integers(0, 32, (b, t, n)).astype(np.int32)
  text = rng.integers(0, 96, (b, t)).astype(np.int32)
  mask = np.ones((b, t, n + 1), bool)
  pos = np.broadcast_to(np.arange(t, dtype=np.int32), (b, t))
  h, c0 = model(audio, text, mask, pos, np.ones((b, t), np.int32))
  dec = model.decoder_logits(np.asarray(h).reshape(b * t, -1),
                             audio.reshape(b * t, n))
  return np.asarray(c0), np.asarray(dec)


@pytest.fixture(scope="module")
def base_export(tmp_path_factory):
  d = tmp_path_factory.mktemp("lora")
  train_and_evaluate(tiny_config(train__steps=2, train__ckpt_every=2),
                     str(d / "base"))
  export(str(d / "base"), str(d / "base_export"), dtype="float32")
  return d / "base_export"


@pytest.fixture(scope="module")
def lora_run(base_export, tmp_path_factory):
  wd = tmp_path_factory.mktemp("lora_run") / "run"
  train_and_evaluate(lora_config(base_export), str(wd))
  return wd


def test_only_adapters_train_and_frozen_weights_stay(base_export, lora_run):
  r = restore_params(str(lora_run))
  base = models.flatten(restore_params(str(base_export)).params["model"])
  adapters = models.flatten(r.params["model"])
  frozen = models.flatten(r.extra)
  assert adapters and all(k.endswith((".lora_a", ".lora_b")) for k in adapters)
  # attn: q, k, v, o and mlp: gate, up, down, in both stacks.
  assert len(adapters) == 2 * 2 * 7
  assert sorted(frozen) == sorted(base)
  for k, v in base.items():
    np.testing.assert_array_equal(np.asarray(frozen[k]), np.asarray(v))
  # b starts at zero; three updates moved it.
  assert all(np.abs(np.asarray(v)).max() > 0 for k, v in adapters.items()
             if k.endswith(".lora_b"))


def test_optimizer_state_only_for_adapters(lora_run):
  from csm_jax.training.state import StateBuilder  # pylint: disable=g-import-not-at-top
  from csm_jax.training.run import make_task  # pylint: disable=g-import-not-at-top
  c = lora_config("")
  full = StateBuilder.create(make_task(tiny_config()), tiny_config())
  lora = StateBuilder.create(make_task(c), c)
  sizes = {}
  for name, b in (("full", full), ("lora", lora)):
    a = b.build_abstract()
    sizes[name] = sum(x.size for x in jax.tree.leaves(a["opt"]))
    if name == "lora":
      assert all(isinstance(v, nnx.LoRAParam) for v in jax.tree.leaves(
          a["params"]["model"], is_leaf=lambda x: isinstance(x, nnx.Variable)))
  assert sizes["lora"] < sizes["full"] / 4
  del lora_run


def test_merged_export_computes_the_adapted_model(lora_run, tmp_path):
  adapted = restore_params(str(lora_run)).model()
  export(str(lora_run), str(tmp_path / "merged"), dtype="float32")
  merged = restore_params(str(tmp_path / "merged"))
  assert merged.config.train.lora.rank == 0
  assert not any(k.endswith("lora_a") for k in models.flatten(
      merged.params["model"]))
  for a, b in zip(forward(adapted), forward(merged.model())):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
  # Kept adapters: the same model once merged on load.
  export(str(lora_run), str(tmp_path / "kept"), dtype="float32",
         keep_adapters=True)
  kept = restore_params(str(tmp_path / "kept"))
  assert kept.config.train.lora.rank == 4
  for a, b in zip(forward(merge_lora(kept).model()), forward(merged.model())):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_init_from_a_model_of_another_shape_is_refused(base_export, tmp_path):
  c = lora_config(base_export)
  c.model.backbone.mlp = 256
  with pytest.raises(schema.ConfigError, match=r"config\.train\.init_from: "
                     r".* another config \(model\.backbone"):
    train_and_evaluate(c, str(tmp_path / "w"))


def test_a_trained_model_gains_a_fresh_memory(base_export, tmp_path):
  from tests.memory.helpers import memory_config  # pylint: disable=g-import-not-at-top
  c = memory_config(enabled=True)
  c.train.steps, c.train.ckpt_every, c.train.lr = 1, 1, 1e-12
  c.train.init_from = str(base_export)
  train_and_evaluate(c, str(tmp_path / "mem"))
  got = models.flatten(restore_params(str(tmp_path / "mem")).params["model"])
  base = models.flatten(restore_params(str(base_export)).params["model"])
  assert any(k.startswith("memory.") for k in got)
  # Every weight the source has is the source's (one step at lr 1e-12).
  for k, v in base.items():
    np.testing.assert_allclose(np.asarray(got[k]), np.asarray(v), atol=1e-6)
  assert sorted(k for k in got if not k.startswith("memory.")) == sorted(base)
