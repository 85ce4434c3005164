"""The prosody stream is a switch: off is the plain CSM, on only adds.

A stream-on model whose prosody tables are zero computes exactly what the
stream-off model with the same weights does (losses and greedy codes), so
the stream changes the model only through what it learns; rows carry the
prosody column where audio is, with the style of the target turn only.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.data.examples.frames import (ProsodyLayout, Turn,
                                         conversation_rows, pack)
from csm_jax.inference import cli
from csm_jax.inference.generator import Control, Generator, Sampling
from csm_jax.inference.prosody_control import Sketch
from csm_jax.model.csm import CSM
from csm_jax.model.loss import csm_loss
from tests.foundation.tiny import tiny_config
from tests.prosody import helpers as H

SEQ = 48


def _bins(c):
  return H.fitted_bins(c)


def _batch(bins, prosody=True):
  rng = np.random.default_rng(1)
  layout = ProsodyLayout(bins.unvoiced, bins.unknown_style) if prosody \
      else None
  tok = H.CharTokenizer()
  rows = []
  for i in range(4):
    ctx_codes = rng.integers(1, 32, (6, 4))
    codes = rng.integers(1, 32, (10, 4))
    tokens = lambda n: (rng.integers(0, bins.unvoiced + 1, n),
                        rng.integers(0, bins.energy_bins, n))
    ctx = Turn(np.asarray(tok.encode_turn(0, "hi")), ctx_codes,
               prosody=tokens(6) if prosody else None)
    cur = Turn(np.asarray(tok.encode_turn(1, f"ok {i}")), codes, True,
               prosody=tokens(10) if prosody else None,
               style=(i % 2) if prosody else None)
    rows.append(pack([conversation_rows([ctx, cur], 4, prosody=layout)], SEQ))
  return {k: jnp.asarray(np.stack([r[k] for r in rows])) for k in rows[0]}


def _models():
  off_c = tiny_config()
  on_c = H.prosody_config()
  off = CSM(off_c.model, nnx.Rngs(params=0))
  on = CSM(on_c.model, nnx.Rngs(params=0))
  return off_c, off, on_c, on


def _zero_stream(model):
  for name in ("f0_in", "energy_in", "style_in", "f0_plan", "energy_plan",
               "style_plan"):
    emb = getattr(model.prosody, name).table
    emb[...] = jnp.zeros_like(emb[...])


def test_stream_on_only_adds_parameters():
  _, off, _, on = _models()
  assert off.prosody is None
  off_p = nnx.to_flat_state(nnx.state(off, nnx.Param))
  on_p = dict(nnx.to_flat_state(nnx.state(on, nnx.Param)))
  for path, v in off_p:
    np.testing.assert_array_equal(np.asarray(v[...]),
                                  np.asarray(on_p[path][...]), str(path))
  extra = [p for p in on_p if p not in dict(off_p)]
  assert extra and all(p[0] == "prosody" for p in extra)


def test_zeroed_stream_computes_the_plain_csm():
  off_c, off, on_c, on = _models()
  _zero_stream(on)
  bins = _bins(on_c)
  batch = _batch(bins)
  plain = {k: v for k, v in batch.items() if not k.startswith("prosody_")}
  _, m_off = csm_loss(off, plain, jax.random.key(0), 0.5, 0.1)
  _, m_on = csm_loss(on, batch, jax.random.key(0), 0.5, 0.1)
  for k in ("loss/cb0", "loss/decoder", "loss/text", "acc/cb0"):
    np.testing.assert_allclose(float(m_on[k]), float(m_off[k]), rtol=1e-5,
                               err_msg=k)
  # The stream's own terms are logged separately, and only with it on.
  assert not any(k.startswith(("loss/prosody", "acc/prosody")) for k in m_off)
  for k in ("loss/prosody_f0", "loss/prosody_energy", "loss/prosody_voicing",
            "loss/prosody_style", "acc/prosody_f0", "acc/prosody_voicing"):
    assert np.isfinite(float(m_on[k])), k
  # One style target per example: its target turn's first frame.
  assert float(m_on["frames/prosody_style"]) == 4
  s = Sampling(temperature=0.0, max_seconds=0.08 * 6, frames_per_call=3)
  g_off = Generator(off_c, *nnx.split(off), H.CharTokenizer(), None)
  g_on = Generator(on_c, *nnx.split(on), H.CharTokenizer(), None,
                   prosody_bins=bins)
  a = g_off.generate("hello", 1, [], s)
  b = g_on.generate("hello", 1, [], s)
  np.testing.assert_array_equal(a["codes"], b["codes"])
  assert a["prosody"] is None and b["prosody"].shape == (len(b["codes"]), 2)


def test_rows_carry_the_prosody_column_where_audio_is():
  c = H.prosody_config()
  bins = _bins(c)
  layout = ProsodyLayout(bins.unvoiced, bins.unknown_style)
  f0 = np.arange(5) % bins.unvoiced
  energy = np.arange(5) % bins.energy_bins
  ctx = Turn(np.asarray([4, 20, 21]), np.ones((5, 4), np.int32),
             prosody=(f0, energy))
  cur = Turn(np.asarray([5, 22]), np.ones((5, 4), np.int32), True,
             prosody=(f0, energy), style=3)
  r = conversation_rows([ctx, cur], 4, prosody=layout)
  # Context: 3 text rows, 5 frames, end of speech; target: 2 + 5 + 1.
  mask = r["prosody_mask"]
  assert list(mask) == [False] * 3 + [True] * 6 + [False] * 2 + [True] * 6
  np.testing.assert_array_equal(r["prosody_f0"][3:8], f0)
  np.testing.assert_array_equal(r["prosody_energy"][11:16], energy)
  assert r["prosody_f0"][8] == bins.unvoiced      # end of speech: unvoiced
  assert r["prosody_f0"][16] == bins.unvoiced
  # Only the target turn's style is given; the context's is unknown.
  assert set(r["prosody_style"][:9]) == {bins.unknown_style}
  assert set(r["prosody_style"][9:]) == {3}
  plain = conversation_rows([ctx, cur], 4)
  assert not any(k.startswith("prosody_") for k in plain)


def test_pace_without_a_sketch_follows_the_models_own_plan_faster():
  _, _, on_c, on = _models()
  bins = _bins(on_c)
  gen = Generator(on_c, *nnx.split(on), H.CharTokenizer(), None,
                  prosody_bins=bins)
  s = Sampling(temperature=0.0, max_seconds=0.08 * 8, frames_per_call=4,
               min_seconds=0.08 * 8 - 1e-3)
  own = gen.generate("hello", 1, [], s)
  fast = gen.generate("hello", 1, [], dataclasses.replace(s, pace=2.0))
  assert len(own["codes"]) == 8
  assert len(fast["codes"]) == 4
  # The paced plan is the model's own, every other frame.
  np.testing.assert_array_equal(fast["prosody"], own["prosody"][::2])


def test_speaking_with_a_sketch_writes_the_plan_against_the_realized_f0(
    tmp_path):
  _, _, on_c, on = _models()
  bins = _bins(on_c)
  gen = Generator(on_c, *nnx.split(on), H.CharTokenizer(), H.ToneCodec(),
                  prosody_bins=bins)
  sketch = Sketch(bins.f0_ids_of_z(np.linspace(-1, 1, 10)), None)
  out = str(tmp_path / "reply.wav")
  res = cli.speak(gen, "hello", 1, [], Sampling(max_seconds=0.6, seed=0),
                  out, progress=open(os.devnull, "w"),
                  control=Control(sketch=sketch))
  assert os.path.getsize(out) > 44 and res["frames"] >= 10
  assert res["prosody_png"] == str(tmp_path / "reply.prosody.png")
  assert os.path.getsize(res["prosody_png"]) > 0
  assert "plan_realized_f0_r" in res and "style" in res
  assert 0 <= res["plan_realized_f0_frames"] <= res["frames"]
