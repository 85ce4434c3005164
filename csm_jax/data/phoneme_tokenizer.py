"""Phonemes as text tokens: eSpeak NG's phonemizer behind the tokenizer API.

``data.tokenizer_type="phoneme"``. A text is split into words at whitespace;
each word is phonemized on its own (so a word's tokens never depend on the
words after it, which is what lets text stream in word by word and still
give exactly the tokens of the whole text), its phonemes folded to the
classes of ``data.phonemes.INVENTORY`` with eSpeak's stress mark kept
(none, secondary, primary: stress lengthens and raises a vowel), the last
one of each word marked word-final (a word boundary without a token of its
own), and punctuation
after a word becomes a pause token of its kind (``,`` ``.`` ``?`` ``!``):
the cues eSpeak turns into pauses and intonation.

Ids: pad 0, unk 1, bos 2, eos 3, the speaker tags, the four pauses, then
six ids per phoneme class (three stresses, inside a word or word-final),
then the emotion tags (the corpus's emotions and "unknown";
``model.emotion_tag``), last so that no earlier id moves.
A version-1 file (before stress was kept) still loads and tokenizes as it
did: two ids per class. The tokenizer is a
small JSON file (``save``/``load``); ``encode_turn`` matches
``TextTokenizer.encode_turn``: ``[bos] [tag] tokens [eos]``.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Sequence

import numpy as np

from csm_jax.data import phonemes as phoneme_lib
from csm_jax.data.tokenizer import (BOS_ID, DEFAULT_NUM_SPEAKERS, EOS_ID,
                                    PAD_ID, UNK_ID, TokenizerError)

KIND = "phoneme"
VERSION = 2   # 2: stress marks kept
PAUSES = (",", ".", "?", "!")
# Punctuation after a word -> its pause token; the rest pauses like a comma.
_PAUSE_OF = {",": ",", ";": ",", ":": ",", "-": ",", ".": ".", "?": "?",
             "!": "!"}
_SPEAKABLE = re.compile(r"[A-Za-z0-9]")
_CLASSES = phoneme_lib.INVENTORY[1:]  # every class but the pause
_STRESSES = ("", ",", "'")            # none, secondary, primary


class PhonemizeError(TokenizerError):
  """eSpeak cannot phonemize a text (nothing speakable in it); names it."""


def emotion_tags() -> tuple[str, ...]:
  """The emotion tag rows' names, in id order: the embedded corpus's
  emotions (a manifest's labels map onto them), then "unknown"."""
  from csm_jax.data.synthetic.voices import EMOTION_NAMES  # pylint: disable=g-import-not-at-top
  return EMOTION_NAMES + (UNKNOWN_EMOTION,)


UNKNOWN_EMOTION = "unknown"


def known_emotion(label: str | None) -> str | None:
  """A corpus label as an emotion tag's name, None where no tag names it
  (unlabelled, or a manifest's "other")."""
  return label if label and label in emotion_tags()[:-1] else None


@functools.lru_cache(maxsize=65536)
def _word_phonemes(word: str, voice: str) -> tuple[str, ...]:
  from csm_jax.data.synthetic import espeak  # pylint: disable=g-import-not-at-top
  return tuple(p for w in espeak.phonemize(word, voice) for p in w)


def split_words(text: str) -> list[tuple[str, str]]:
  """(word, pause kind or "") for each whitespace-separated word."""
  out = []
  for raw in text.split():
    core = raw.strip("\"'()[]{}")
    m = re.match(r"^(.*?)([,;:.?!\-]*)$", core)
    word, punct = m.group(1).strip("\"'()[]{}"), m.group(2)
    pause = ""
    for ch in reversed(punct):  # "?!" or "..." : the last mark decides
      pause = _PAUSE_OF.get(ch, "")
      if pause:
        break
    out.append((word, pause))
  return out


class PhonemeTokenizer:
  """Text -> eSpeak phoneme classes, word-final marks and pauses."""

  kind = KIND
  pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

  def __init__(self, num_speakers: int = DEFAULT_NUM_SPEAKERS,
               voice: str = "en-us", path: str = "<memory>",
               version: int = VERSION):
    if version not in (1, 2):
      raise TokenizerError(f"{path}: phoneme tokenizer version {version} is "
                           f"newer than this code's ({VERSION})")
    self.num_speakers, self.voice, self.path = num_speakers, voice, path
    self.version = version
    self.stresses = len(_STRESSES) if version >= 2 else 1
    self.per_class = 2 * self.stresses
    self.first_pause = 4 + num_speakers
    self.first_phoneme = self.first_pause + len(PAUSES)

  # -- ids ------------------------------------------------------------------
  @property
  def first_emotion(self) -> int:
    return self.first_phoneme + self.per_class * len(_CLASSES)

  @property
  def vocab_size(self) -> int:
    return self.first_emotion + len(emotion_tags())

  def emotion_token_id(self, emotion: str | None) -> int:
    """The tag of ``emotion`` (None or "": unknown); an emotion outside
    ``emotion_tags()`` is one error naming the known ones."""
    names = emotion_tags()
    name = emotion or UNKNOWN_EMOTION
    if name not in names:
      raise TokenizerError(f"unknown emotion {name!r}; this model knows "
                           f"{', '.join(names[:-1])} (or none)")
    return self.first_emotion + names.index(name)

  def tag_rows(self, speaker_id: int, emotion: str | None = None,
               with_emotion: bool = False) -> list[int]:
    """A turn's tag rows on the aligned stream: ``[bos] [speaker]``, and
    its emotion tag when ``with_emotion`` (``model.emotion_tag``)."""
    rows = [BOS_ID, self.speaker_token_id(int(speaker_id))]
    return rows + ([self.emotion_token_id(emotion)] if with_emotion else [])

  def speaker_token_id(self, speaker_id: int) -> int:
    if not 0 <= speaker_id < self.num_speakers:
      raise TokenizerError(f"speaker id {speaker_id} outside the model's "
                           f"tags [0]..[{self.num_speakers - 1}] ({self.path})")
    return 4 + int(speaker_id)

  def pause_id(self, kind: str) -> int:
    return self.first_pause + PAUSES.index(kind)

  def phoneme_id(self, mnemonic: str, final: bool) -> int:
    cls = phoneme_lib.symbol_id(mnemonic)
    if cls == 0:
      raise ValueError("pauses have their own tokens (pause_id)")
    stress = 2 if "'" in mnemonic else 1 if "," in mnemonic else 0
    if self.stresses == 1:
      stress = 0
    return (self.first_phoneme + self.per_class * (cls - 1) + 2 * stress
            + int(final))

  def is_pause(self, token: int) -> bool:
    return self.first_pause <= token < self.first_phoneme

  def symbol(self, token: int) -> str:
    """The class symbol of a token: ``_`` for pauses (as in eSpeak's
    events), the phoneme class otherwise, ``""`` for specials and tags."""
    if self.is_pause(token):
      return phoneme_lib.PAUSE
    if token >= self.first_phoneme:
      return _CLASSES[(token - self.first_phoneme) // self.per_class]
    return ""

  # -- encode / decode ------------------------------------------------------
  def word_tokens(self, word: str, pause: str) -> list[int]:
    """Tokens of one word and the pause after it."""
    out = []
    if _SPEAKABLE.search(word):
      phones = [p for p in _word_phonemes(word, self.voice)
                if phoneme_lib.base_symbol(p) != phoneme_lib.PAUSE]
      out = [self.phoneme_id(p, i == len(phones) - 1)
             for i, p in enumerate(phones)]
    if pause:
      out.append(self.pause_id(pause))
    return out

  def encode(self, text: str, add_bos: bool = False,
             add_eos: bool = False) -> list[int]:
    ids = [t for w, p in split_words(text) for t in self.word_tokens(w, p)]
    if not any(not self.is_pause(t) for t in ids):
      raise PhonemizeError(f"cannot phonemize {text!r}: no word eSpeak can "
                           "speak in it (letters or digits of a Latin "
                           "script)")
    return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

  def encode_turn(self, speaker_id: int, text: str, add_bos: bool = True,
                  add_eos: bool = True) -> list[int]:
    tag = self.speaker_token_id(int(speaker_id))
    return (([BOS_ID] if add_bos else []) + [tag] + self.encode(text)
            + ([EOS_ID] if add_eos else []))

  def decode(self, ids: Sequence[int]) -> str:
    """The phonemes of ``ids``: words separated by spaces, pauses as
    their punctuation, speaker tags as ``[n]``."""
    out = []
    for t in (int(i) for i in ids):
      if t in (PAD_ID, BOS_ID, EOS_ID):
        continue
      if not 0 <= t < self.vocab_size:
        raise TokenizerError(f"id {t} outside vocab of {self.vocab_size}")
      if t == UNK_ID:
        out.append("<unk>")
      elif t < self.first_pause:
        out.append(f"[{t - 4}]")
      elif t >= self.first_emotion:
        out.append(f"<{emotion_tags()[t - self.first_emotion]}> ")
      elif self.is_pause(t):
        out.append(PAUSES[t - self.first_pause] + " ")
      else:
        k = t - self.first_phoneme
        stress = _STRESSES[(k % self.per_class) // 2]
        out.append(stress + _CLASSES[k // self.per_class]
                   + (" " if k % 2 else "|"))
    return "".join(out).strip()

  def pieces(self, ids: Sequence[int]) -> list[str]:
    return [self.decode([i]) for i in ids]

  # -- storage --------------------------------------------------------------
  def save(self, path: str) -> None:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
      json.dump({"kind": KIND, "version": self.version,
                 "num_speakers": self.num_speakers,
                 "voice": self.voice,
                 "inventory": list(phoneme_lib.INVENTORY)}, f)

  @classmethod
  def load(cls, path: str) -> "PhonemeTokenizer":
    with open(path, encoding="utf-8") as f:
      meta = json.load(f)
    if meta.get("kind") != KIND:
      raise TokenizerError(f"{path}: not a phoneme tokenizer")
    if tuple(meta.get("inventory", ())) != phoneme_lib.INVENTORY:
      raise TokenizerError(f"{path}: its phoneme inventory differs from "
                           "this version's (data.phonemes.INVENTORY)")
    return cls(int(meta["num_speakers"]), meta.get("voice", "en-us"), path,
               int(meta.get("version", 1)))


def word_events(text: str, word_starts, duration: float,
                voice: str = "en-us") -> tuple[list[str], np.ndarray] | None:
  """Phoneme events (symbols, start seconds) of ``text`` from the start of
  each of its whitespace-separated words, as a forced aligner or a
  manifest gives them: each word's phonemes (and the pause its punctuation
  makes) spread evenly from its start to the next word's (the last to
  ``duration``). Words phonemize one by one, as ``PhonemeTokenizer``
  encodes them, so the events match its tokens. Unknown starts (None or
  NaN) fall evenly between their known neighbours; None when none is
  known.
  """
  words = split_words(text)
  starts = np.array([np.nan if s is None else float(s) for s in word_starts],
                    np.float64)
  if len(starts) != len(words):
    raise ValueError(f"{len(starts)} word starts for the {len(words)} words "
                     f"of {text!r}")
  known = np.flatnonzero(np.isfinite(starts))
  if not len(known):
    return None
  idx = np.arange(len(words))
  starts = np.interp(idx, known, starts[known])
  starts = np.clip(np.maximum.accumulate(starts), 0.0, duration)
  ends = np.append(starts[1:], max(duration, starts[-1]))
  symbols, times = [], []
  for (word, pause), s, e in zip(words, starts, ends):
    phones = [p for p in (_word_phonemes(word, voice)
                          if _SPEAKABLE.search(word) else ())
              if phoneme_lib.base_symbol(p) != phoneme_lib.PAUSE]
    phones += [phoneme_lib.PAUSE] if pause else []
    for j, ph in enumerate(phones):
      symbols.append(ph)
      times.append(s + (e - s) * j / len(phones))
  return symbols, np.asarray(times, np.float32)


def is_phoneme_tokenizer_file(path: str) -> bool:
  try:
    with open(path, "rb") as f:
      head = f.read(32)
  except OSError:
    return False
  return head.startswith(b'{"kind": "phoneme"')
