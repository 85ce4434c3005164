"""Following a sketch changes the realized F0 in the direction asked.

A tiny two-stage model is trained for a few hundred steps on utterances of
the tone codec (tests.prosody.helpers), whose F0 is what codebook 0 says;
its prosody tokens come from the decoded audio by the real extraction.
It then speaks each trained text twice, following a rising and a falling F0
sketch, and the F0 of the generated audio (same extraction) must, for the
median text, correlate with each sketch and rise or fall with it.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import optax
from flax import nnx

from csm_jax.data import prosody_tokens as pt
from csm_jax.data.examples.frames import (ProsodyLayout, Turn,
                                         conversation_rows, pack)
from csm_jax.inference.generator import Control, Generator, Sampling
from csm_jax.inference.prosody_control import Sketch, follow_correlation
from csm_jax.model.csm import CSM
from csm_jax.model.loss import csm_loss
from tests.prosody import helpers as H

SEQ = 64
STEPS = 350


def _config():
  c = H.prosody_config()
  c.data.seq_len = SEQ
  c.model.audio_window = SEQ
  c.model.decoder_frame_fraction = 0.5
  return c


def _dataset(c, codec, rng, n=48):
  codes = [H.utterance_codes(rng, int(rng.integers(24, 40))) for _ in range(n)]
  contours = [pt.frame_contour(codec.decode(x), H.SR, H.FRAME_RATE, len(x))
              for x in codes]
  stats = H.fitted_stats(c, contours, [0] * n)
  bins = pt.ProsodyBins(c.model.prosody, stats)
  layout = ProsodyLayout(bins.unvoiced, bins.unknown_style)
  tok = H.CharTokenizer()
  rows = []
  for i, (x, ct) in enumerate(zip(codes, contours)):
    text = np.asarray(tok.encode_turn(0, "say %d" % (i % 7)))
    turn = Turn(text, x, True, prosody=bins.tokens(ct, 0),
                style=bins.style_id(i % 2, 0))
    rows.append(pack([conversation_rows([turn], 4, prosody=layout)], SEQ))
  batch = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  return bins, batch


def _train(c, batch):
  model = CSM(c.model, nnx.Rngs(params=0))
  graphdef, params = nnx.split(model)
  opt = optax.adam(3e-3)
  state = opt.init(params)
  batch = jax.tree.map(jnp.asarray, batch)

  @jax.jit
  def step(params, state, idx, key):
    sub = jax.tree.map(lambda a: a[idx], batch)

    def loss(p):
      return csm_loss(nnx.merge(graphdef, p), sub, key, 0.5)[0]
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  rng = np.random.default_rng(1)
  n = len(batch["segment_ids"])
  first = last = None
  t0 = time.perf_counter()
  for i in range(STEPS):
    idx = rng.choice(n, 16, replace=False)
    params, state, value = step(params, state, idx, jax.random.key(i))
    first = float(value) if first is None else first
    last = float(value)
  print(f"trained {STEPS} steps in {time.perf_counter() - t0:.1f} s: "
        f"loss {first:.2f} -> {last:.2f}")
  return graphdef, params, first, last


# Slow: a few hundred training steps first. tests/prosody/test_stream.py
# covers the prosody stream's plumbing in the default suite.
@pytest.mark.slow
def test_following_a_sketch_moves_the_realized_f0_the_way_asked():
  c = _config()
  codec = H.ToneCodec()
  bins, batch = _dataset(c, codec, np.random.default_rng(0))
  graphdef, params, first, last = _train(c, batch)
  assert last < 0.7 * first   # it learned something
  gen = Generator(c, graphdef, params, H.CharTokenizer(), codec,
                  prosody_bins=bins)
  frames = 30
  rise = Sketch(bins.f0_ids_of_z(np.linspace(-1.8, 1.8, frames)), None)
  fall = Sketch(bins.f0_ids_of_z(np.linspace(1.8, -1.8, frames)), None)
  s = Sampling(temperature=0.0, max_seconds=frames / H.FRAME_RATE,
               frames_per_call=6, seed=0)
  # One greedy generation is at the mercy of rounding: a different summation
  # order in one product has moved a single text's correlation from 0.83 to
  # 0.54, and the seven trained texts range from -0.4 to 0.9. So the claim is
  # about the typical generation (the median over texts and directions) and
  # about each text's pair: rising when asked to rise against when asked to
  # fall.
  slopes, rs = {"rise": [], "fall": []}, {"rise": [], "fall": []}
  for text in ["say %d" % i for i in range(7)]:
    for name, sk in (("rise", rise), ("fall", fall)):
      out = gen.generate(text, 0, [], s, Control(sketch=sk))
      # Stage 1 used the sketch's tokens, not its own samples.
      np.testing.assert_array_equal(out["prosody"][:frames, 0], sk.f0)
      got = pt.frame_contour(out["audio"], H.SR, H.FRAME_RATE, frames)
      rs[name].append(follow_correlation(sk.f0, got.log_f0, bins, 0))
      ok = np.isfinite(got.log_f0)
      assert ok.sum() >= frames // 2, (text, name)
      slopes[name].append(
          np.polyfit(np.flatnonzero(ok), got.log_f0[ok], 1)[0])
  pairs = np.asarray(slopes["rise"]) - np.asarray(slopes["fall"])
  median = float(np.median(rs["rise"] + rs["fall"]))
  print("correlation asked/realized per text:", rs, "median:", median,
        "slope rise - fall per text:", pairs)
  assert median > 0.5, rs
  assert (pairs > 0).sum() >= 6, pairs
  assert np.median(slopes["rise"]) > 0 > np.median(slopes["fall"]), slopes
