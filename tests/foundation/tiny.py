"""A CSM config small enough that a test compiles and trains it in seconds."""

from csm_jax.config import make_config

TINY_OVERRIDES = (
    "model.backbone.width=64,model.backbone.depth=2,model.backbone.heads=4,"
    "model.backbone.kv_heads=2,model.backbone.mlp=128,"
    "model.decoder.width=32,model.decoder.depth=1,model.decoder.heads=2,"
    "model.decoder.kv_heads=2,model.decoder.mlp=64,"
    "model.n_codebooks=4,model.codebook_size=32,model.audio_vocab=35,"
    "model.text_vocab=96,model.text_loss_weight=0.1,"
    "model.text_window=8,model.audio_window=32,model.max_seq_len=128,"
    "model.decoder_frame_fraction=0.25,"
    "data.source=synthetic_tokens,data.seq_len=48,data.batch_size=4,data.num_examples=64,"
    "data.eval_examples=8,train.warmup_steps=2,train.lr=3e-3,"
    "train.log_every=1,train.eval_every=1000,train.eval_steps=1")


def tiny_config(**overrides):
  from csm_jax.config.presets import apply_overrides
  c = apply_overrides(make_config("debug"), TINY_OVERRIDES)
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
  for key, value in overrides.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def read_losses(workdir):
  """Last logged loss per step from metrics.jsonl (resumes re-log steps)."""
  import json
  import os
  rows = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if "loss" in row:
        rows[row["step"]] = row["loss"]
  return rows
