"""The Mimi options of the codec: on in the mimi row, off (as before) elsewhere.

``debug`` and ``base`` keep zero padding, a dense upsample and the tanh
GELU, and compute exactly what they computed before the options existed
(codes and decoded audio of a fixed seed and signal, recorded then);
codec directories saved without the fields load with those defaults. The
replicate-padded downsample and the depthwise upsample stream exactly.
"""

import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from csm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d
from csm_jax.codec.model import init_codec
from csm_jax.config import codec as cfg
from csm_jax.config import schema

# Recorded with the code before the options existed: codes hash, decoded
# sum and energy, and the energy of a training (k-means, EMA) pass.
GOLDEN = {
    "debug": ((1, 24, 8), "176b242b2d45730e", -59.57543182373047,
              38.30360412597656, 5.39542818069458),
    "base": ((1, 6, 32), "5fbd0df14a07b8e8", -6.647338390350342,
             68.62255859375, 4.557750701904297),
}


def test_rows_and_config_files():
  for size in ("debug", "base"):
    c = cfg.codec_config(size)
    assert (c.downsample_pad, c.upsample_depthwise,
            c.transformer.exact_gelu) == ("zeros", False, False)
    # Old codec workdirs, which record none of the options, still resume.
    assert "downsample_pad" not in cfg.structural_dict(c)
  m = cfg.codec_config("mimi")
  assert (m.downsample_pad, m.upsample_depthwise,
          m.transformer.exact_gelu) == ("replicate", True, True)
  assert m.semantic.enabled and m.rvq.levels == 32


def test_configs_codec_is_split_like_mimi():
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("codec_cfg", "configs/codec.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  c = module.get_config()
  assert c.codec.semantic.enabled and c.codec.semantic.weight == 0.0
  assert c.codec.downsample_pad == "replicate"
  # csm_1b is fully causal.
  m = schema.make_config("csm_1b").model
  assert m.text_window == m.max_seq_len == 2048


# The base (Mimi-sized) codec's goldens are slow on CPU; the debug row runs
# every option's default path in the default suite.
@pytest.mark.parametrize("size", [
    "debug", pytest.param("base", marks=pytest.mark.slow)])
def test_outputs_unchanged(size):
  c = cfg.codec_config(size)
  codec = init_codec(c, seed=0)
  sr = c.sample_rate
  t = np.arange(int(0.48 * sr)) / sr
  audio = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(
      2 * np.pi * 1730 * t)).astype(np.float32)[None]
  codes = np.asarray(codec.encode(jnp.asarray(audio)))
  out = np.asarray(codec.decode(jnp.asarray(codes)))
  train = codec(jnp.asarray(audio), rng=jax.random.key(1), train=True)
  shape, digest, total, energy, train_energy = GOLDEN[size]
  assert codes.shape == shape
  assert hashlib.sha256(codes.astype(np.int32).tobytes()).hexdigest()[
      :16] == digest
  np.testing.assert_allclose(float(np.sum(out)), total, rtol=1e-4)
  np.testing.assert_allclose(float(np.sum(out ** 2)), energy, rtol=1e-4)
  np.testing.assert_allclose(float(jnp.sum(train["audio"] ** 2)),
                             train_energy, rtol=1e-4)


def _stream(module, x, chunk):
  state = module.init_state(x.shape[0])
  ys = []
  for i in range(0, x.shape[1], chunk):
    y, state = module.step(x[:, i:i + chunk], state)
    ys.append(y)
  return jnp.concatenate(ys, axis=1)


def test_replicate_pad_and_depthwise_upsample_stream_exactly():
  rngs = nnx.Rngs(0)
  x = jax.random.normal(jax.random.key(0), (2, 12, 8)) + 3.0
  down = CausalConv1d(8, 8, 4, stride=2, pad_mode="replicate", rngs=rngs)
  offline = down(x)
  np.testing.assert_allclose(_stream(down, x, 2), offline, atol=1e-6)
  # Frame 0 sees the first input repeated, not zeros.
  zeros = CausalConv1d(8, 8, 4, stride=2, rngs=rngs)
  zeros.kernel, zeros.bias = down.kernel, down.bias
  padded = jnp.concatenate([jnp.repeat(x[:, :1], 2, axis=1), x], axis=1)
  np.testing.assert_allclose(offline[:, 0], zeros(padded)[:, 1], atol=1e-5)
  assert not np.allclose(offline[:, 0], zeros(x)[:, 0], atol=1e-3)
  up = CausalConvTranspose1d(8, 8, 4, stride=2, depthwise=True, rngs=rngs)
  assert up.kernel.shape == (4, 1, 8)
  y = up(x)
  np.testing.assert_allclose(_stream(up, x, 3), y, atol=1e-6)
  # Channel c of the output depends on channel c of the input only.
  x2 = x.at[:, :, 3].add(1.0)
  changed = np.abs(np.asarray(up(x2) - y)).max(axis=(0, 1)) > 0
  assert changed.tolist() == [i == 3 for i in range(8)]
