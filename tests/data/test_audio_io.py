"""Bad-input kinds and format handling of csm_jax.audio.io, on real files."""

import numpy as np
import pytest
import soundfile as sf

from csm_jax.audio import io as audio


def _tone(sr, seconds=0.5, amp=0.3, channels=1):
  t = np.arange(int(sr * seconds)) / sr
  x = (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
  return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def _expect(path, reason, sr=16000):
  with pytest.raises(audio.AudioError) as info:
    audio.load_audio(path, sr)
  assert info.value.reason == reason
  assert str(path) in str(info.value)
  assert isinstance(info.value, ValueError)


def test_empty_file(tmp_path):
  p = tmp_path / "empty.wav"
  p.write_bytes(b"")
  _expect(p, "empty")


def test_zero_length_wav(tmp_path):
  p = tmp_path / "zero.wav"
  sf.write(p, np.zeros((0,), np.float32), 16000, subtype="PCM_16")
  _expect(p, "empty")


def test_all_zero_wav_is_silent(tmp_path):
  p = tmp_path / "silent.wav"
  sf.write(p, np.zeros(16000, np.float32), 16000, subtype="PCM_16")
  _expect(p, "silent")


def test_nan_in_float_wav(tmp_path):
  p = tmp_path / "nan.wav"
  x = _tone(16000)
  x[100] = np.nan
  sf.write(p, x, 16000, subtype="FLOAT")
  _expect(p, "non_finite")


def test_clipped(tmp_path):
  p = tmp_path / "clipped.wav"
  x = np.clip(_tone(16000, amp=3.0), -1, 1)
  sf.write(p, x, 16000, subtype="PCM_16")
  _expect(p, "clipped")


def test_few_full_scale_peaks_are_not_clipped(tmp_path):
  p = tmp_path / "peaks.wav"
  x = _tone(16000)
  x[::1000] = 1.0          # 0.1% of samples at full scale
  sf.write(p, x, 16000, subtype="PCM_16")
  assert audio.load_audio(p, 16000).shape == (8000,)


def test_random_bytes_corrupt(tmp_path):
  p = tmp_path / "noise.wav"
  p.write_bytes(np.random.default_rng(0).bytes(4096))
  _expect(p, "corrupt")


def test_text_file_corrupt(tmp_path):
  p = tmp_path / "notes.txt"
  p.write_text("this is not audio\n" * 20)
  _expect(p, "corrupt")


def test_too_short(tmp_path):
  p = tmp_path / "short.wav"
  sf.write(p, _tone(16000, seconds=0.02), 16000, subtype="PCM_16")
  _expect(p, "too_short")


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="missing.wav"):
    audio.load_audio(tmp_path / "missing.wav", 16000)


def test_stereo_downmix(tmp_path):
  p = tmp_path / "stereo.wav"
  sf.write(p, _tone(16000, channels=2), 16000, subtype="FLOAT")
  y = audio.load_audio(p, 16000)
  assert y.ndim == 1 and y.dtype == np.float32
  np.testing.assert_allclose(y, 0.75 * _tone(16000), atol=1e-6)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 48000])
@pytest.mark.parametrize("target", [16000, 24000])
def test_rates_resample(tmp_path, sr, target):
  p = tmp_path / f"tone_{sr}.flac"
  sf.write(p, _tone(sr), sr)
  y = audio.load_audio(p, target)
  assert y.dtype == np.float32
  assert abs(len(y) - target // 2) <= 2
  # 220 Hz survives resampling: the spectral peak stays at 220 Hz.
  spec = np.abs(np.fft.rfft(y))
  assert abs(np.argmax(spec) * target / len(y) - 220) < 5


def test_check_audio_arrays():
  audio.check_audio(_tone(16000), 16000)
  audio.check_audio((_tone(16000) * 32767).astype(np.int16), 16000)
  for x, reason in [(np.zeros(0, np.float32), "empty"),
                    (np.zeros(16000, np.int16), "silent"),
                    (np.full(16000, np.inf, np.float32), "non_finite"),
                    (np.full(16000, 32767, np.int16), "clipped")]:
    with pytest.raises(audio.AudioError, match="turn_3") as info:
      audio.check_audio(x, 16000, path="turn_3")
    assert info.value.reason == reason


def test_loudness_normalize_and_write(tmp_path):
  quiet = _tone(16000, amp=0.01)
  y = audio.loudness_normalize(quiet, -23.0)
  assert abs(audio.rms_db(y) - (-23.0)) < 0.2
  loud_spiky = _tone(16000, amp=0.01)
  loud_spiky[5] = 0.5      # one spike: the peak limit wins over the target
  z = audio.loudness_normalize(loud_spiky, -6.0)
  assert np.max(np.abs(z)) <= 0.95 + 1e-6
  with pytest.raises(audio.AudioError) as info:
    audio.loudness_normalize(np.zeros(1000, np.float32))
  assert info.value.reason == "silent"
  p = tmp_path / "sub" / "out.wav"
  audio.write_wav(p, y, 16000)
  back = audio.load_audio(p, 16000)
  np.testing.assert_allclose(back, y, atol=1e-4)
  with pytest.raises(audio.AudioError):
    audio.write_wav(tmp_path / "bad.wav", np.array([np.nan, 0.1]), 16000)
