"""The phoneme inventory of the embedded corpus, and phonemes per code frame.

The corpus records eSpeak's phoneme mnemonics with their start times
(``corpora.turns.alignment_features_spec``). ``symbol_id`` folds a
mnemonic to a class of ``INVENTORY``: stress marks dropped, every pause one
class, anything unlisted ``<unk>``. ``frame_labels`` gives the class spoken
at the centre of each frame of a turn: the targets of the codec's phonetic
head.
"""

from __future__ import annotations

import numpy as np

PAUSE, UNKNOWN = "_", "<unk>"
# eSpeak NG's English mnemonics, stress removed, most frequent first as
# counted on the default corpus (every symbol seen at least 9 times there).
INVENTORY = (
    PAUSE, UNKNOWN, "n", "t", "s", "I", "d", "l", "k", "r", "m", "z", "D",
    "E", "aI", "@", "a", "w", "i:", "f", "V", "p", "b", "eI", "a#", "v", "i",
    "I2", "oU", "3", "u:", "@2", "0", "h", "j", "g", "S", "N", "@L", "dZ",
    "tS", "aU", "U", "A@", "I#", ";", "O:", "O@", "aa", "3:", "A:", "t#",
    "o@", "e@", "T", "i@3", "OI", "r-", "aI2", "U@", "O2", "i@", "Z", "t2",
    "aI@", "aI3", "t[")
_IDS = {s: i for i, s in enumerate(INVENTORY)}
N_CLASSES = len(INVENTORY)


def base_symbol(mnemonic: str) -> str:
  """A mnemonic without its stress marks; every pause is ``_``."""
  s = mnemonic.replace("'", "").replace(",", "")
  return PAUSE if s.startswith("_") else s


def symbol_id(mnemonic: str) -> int:
  return _IDS.get(base_symbol(mnemonic), _IDS[UNKNOWN])


def frame_labels(symbols, starts, n_frames: int,
                 frame_seconds: float) -> np.ndarray:
  """(n_frames,) int32: the class of the phoneme under each frame's centre,
  ``PAUSE`` before the first phoneme starts."""
  starts = np.asarray(starts, np.float64)
  ids = np.asarray([symbol_id(s) for s in symbols], np.int32)
  centres = (np.arange(n_frames) + 0.5) * frame_seconds
  k = np.searchsorted(starts, centres, side="right") - 1
  out = np.full((n_frames,), _IDS[PAUSE], np.int32)
  has = k >= 0
  out[has] = ids[k[has]] if len(ids) else _IDS[PAUSE]
  return out
