"""Phoneme classes per code frame, and the corpus without phonemes."""

import numpy as np
import pytest

from csm_jax.config import make_config
from csm_jax.config.schema import ConfigError
from csm_jax.data import phonemes
from csm_jax.data.corpora import registry


def test_symbols_fold_stress_and_pauses():
  assert phonemes.base_symbol("'oU") == "oU" == phonemes.base_symbol(",oU")
  assert phonemes.symbol_id("_:") == phonemes.symbol_id("_") == 0
  assert phonemes.symbol_id("not-a-phoneme") == phonemes.symbol_id("<unk>")
  assert len(set(phonemes.INVENTORY)) == phonemes.N_CLASSES


def test_frame_labels_take_the_phoneme_under_each_frame_centre():
  # Frames of 40 ms: centres at 20, 60, 100, 140, 180 ms.
  labels = phonemes.frame_labels(["h", "@", "'l", "_:"],
                                 [0.03, 0.05, 0.09, 0.15], 5, 0.04)
  ids = [phonemes.symbol_id(s) for s in ("_", "@", "l", "l", "_")]
  np.testing.assert_array_equal(labels, ids)


def _record(with_phonemes: bool):
  rec = {"audio": np.zeros(1600, np.int16), "sample_rate": 16000}
  if with_phonemes:
    rec.update(phonemes=b"h @ 'l", phoneme_starts=np.array([0.0, .03, .06],
                                                          np.float32))
  return rec


def test_clips_carry_phoneme_targets_or_say_the_corpus_has_none(
    monkeypatch):
  config = make_config("debug")
  for flag in (True, False):
    monkeypatch.setattr(registry, "source",
                        lambda c, split, f=flag: [_record(f)])
    clips = registry.CorpusClips(config, "train", 16000, phoneme_hop=640)
    if flag:
      item = clips[0]
      assert item["phoneme_targets"].shape == (3,)
      assert item["audio"].shape == (1600,)
    else:
      with pytest.raises(registry.PhonemesMissingError,
                         match="codec.phonetic.enabled.*no phonemes"):
        clips[0]
  # Without the head the clips are plain audio, phonemes or not.
  assert isinstance(registry.CorpusClips(config, "train", 16000)[0],
                    np.ndarray)
  config.codec.phonetic.classes = 10
  with pytest.raises(ConfigError, match="codec.phonetic.classes"):
    registry.CorpusClips(config, "train", 16000, phoneme_hop=640)
