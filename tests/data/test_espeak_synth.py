"""eSpeak NG synthesis: output format, bit-exact determinism, errors."""

import multiprocessing

import numpy as np
import pytest

from csm_jax.data.synthetic import espeak

TEXT = "The quick brown fox jumps over the lazy dog, doesn't it?"


def test_output_format_and_rate():
  x22 = espeak.synthesize(TEXT, "en-us")
  x24 = espeak.synthesize(TEXT, "en-us", sample_rate=24000)
  assert x22.dtype == np.float32 and x24.dtype == np.float32
  assert x22.ndim == 1 and 1.5 < len(x22) / 22050 < 6
  assert abs(len(x24) / 24000 - len(x22) / 22050) < 0.01
  assert 0.05 < np.abs(x22).max() <= 1.0


def test_prosody_changes_audio():
  slow = espeak.synthesize(TEXT, "en-us", espeak.Prosody(rate=120))
  fast = espeak.synthesize(TEXT, "en-us", espeak.Prosody(rate=260))
  assert len(slow) > 1.6 * len(fast)


def test_bit_exact_regardless_of_history():
  a = espeak.synthesize(TEXT, "en-us+f3", espeak.Prosody(pitch=70))
  espeak.synthesize("Something else entirely first.", "en-gb-x-rp+m3")
  b = espeak.synthesize(TEXT, "en-us+f3", espeak.Prosody(pitch=70))
  np.testing.assert_array_equal(a, b)


def _synth_in_child(_):
  return espeak.synthesize(TEXT, "en-us+f3", espeak.Prosody(pitch=70))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_same_samples_in_pool_workers(method):
  here = espeak.synthesize(TEXT, "en-us+f3", espeak.Prosody(pitch=70))
  with multiprocessing.get_context(method).Pool(2) as pool:
    outs = pool.map(_synth_in_child, range(2))
  for out in outs:
    np.testing.assert_array_equal(out, here)


def test_errors():
  with pytest.raises(espeak.EspeakError, match="no-such-voice"):
    espeak.synthesize("hello", "no-such-voice")
  with pytest.raises(espeak.EspeakError, match="empty"):
    espeak.synthesize("   ", "en-us")


def test_prosody_clamped():
  p = espeak.Prosody(rate=10, volume=500, pitch=-5, range=101).clamped()
  assert (p.rate, p.volume, p.pitch, p.range) == (80, 200, 0, 100)
