"""Codec size table: shapes, derived rates and validation errors."""

import jax
import pytest
from flax import nnx

from csm_jax.config import codec as cfg
from csm_jax.codec.metrics import bitrate
from csm_jax.codec.model import Codec, count_params


def test_mimi_shape():
  c = cfg.codec_config("mimi")
  assert c.sample_rate == 24_000
  assert cfg.hop_length(c) == 1920
  assert cfg.frame_rate(c) == 12.5
  assert (c.rvq.levels, c.rvq.codebook_size, c.rvq.codebook_dim) == (
      32, 2048, 256)
  assert c.transformer.layers == 8 and c.transformer.width == 512
  assert c.transformer.context == 250 and c.semantic.enabled
  assert bitrate(c.rvq.levels, c.rvq.codebook_size, cfg.frame_rate(c)) == 4400
  # Mimi publishes ~79M parameters; ours (with the semantic head) is close.
  n = count_params(nnx.eval_shape(lambda: Codec(c, rngs=nnx.Rngs(0))))
  assert 75e6 < n < 85e6, n


def test_generic_default_quantizer():
  c = cfg.codec_config("base")
  # The research plan's RVQEncoder(layers=32, codebook_size=1024).
  assert c.rvq.levels == 32
  assert c.rvq.codebook_size == 1024


def test_debug_is_small():
  c = cfg.codec_config("debug")
  n = count_params(nnx.eval_shape(lambda: Codec(c, rngs=nnx.Rngs(0))))
  assert n < 2e6
  assert c.rvq.levels == 8 and not c.semantic.enabled


def test_validation_names_the_field():
  c = cfg.codec_config("debug")
  c.channels = (16, 32)
  with pytest.raises(ValueError, match="channels"):
    cfg.validate(c)
  c = cfg.codec_config("debug")
  c.transformer.heads = 3
  with pytest.raises(ValueError, match="transformer.width"):
    cfg.validate(c)
  with pytest.raises(ValueError, match="unknown codec size"):
    cfg.codec_config("huge")
  c = cfg.codec_config("spectral")
  c.rvq.quantize_rate = 0.0
  with pytest.raises(ValueError, match="rvq.quantize_rate"):
    cfg.validate(c)
