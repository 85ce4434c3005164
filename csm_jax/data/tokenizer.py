"""Text tokenizer for CSM turns: SentencePiece with speaker-tag symbols.

CSM feeds each turn's text as ``"[{speaker_id}]{text}"``. The tags ``[0]`` ..
``[N-1]`` are SentencePiece *user-defined symbols*, so a tag is always exactly
one token, whatever text follows it and whatever the corpus taught the model.
``encode_turn`` emits ``[bos] [tag] pieces(text) [eos]``; the text is encoded
on its own so its first word gets the same word-initial piece it has
anywhere else in a sentence. ``decode`` undoes this exactly: for text without
leading/trailing/repeated whitespace and without a tag-like ``"[n] "``
inside it, ``decode(encode_turn(s, t)) == f"[{s}]{t}"``. Normalization is the identity (no NFKC rewriting) and byte
fallback is on, so any UTF-8 text round-trips and nothing maps to unk.

Ids: pad 0, unk 1, bos 2, eos 3, then the speaker tags, then learned pieces.

``python -m csm_jax.text train`` trains one from ``read_corpus_texts(DIR)``;
``DIR`` may hold ``*.txt`` (one text per line), ``*.jsonl`` (a ``"text"``
field per line), or a prepared ``synthetic_dialogues`` tfds directory (its
train split's transcripts are used).
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Iterable, Iterator, Sequence

from csm_jax.config.errors import UserError

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
DEFAULT_NUM_SPEAKERS = 64
_MIN_LEARNED = 64          # pieces beyond specials, tags and 256 bytes
_TAG_RE = re.compile(r"\[(\d+)\] ")


class TokenizerError(UserError, ValueError):
  """Bad tokenizer input: unknown speaker id, unreadable model, tiny vocab."""


def speaker_tag(speaker_id: int) -> str:
  return f"[{speaker_id}]"


class TextTokenizer:
  """A trained SentencePiece model plus the CSM turn format."""

  def __init__(self, model_proto: bytes, path: str = "<memory>"):
    import sentencepiece as spm
    self.path = path
    self._sp = spm.SentencePieceProcessor()
    try:
      self._sp.LoadFromSerializedProto(model_proto)
    except (RuntimeError, OSError) as e:
      raise TokenizerError(f"{path}: not a SentencePiece model ({e})") from e
    self.num_speakers = 0
    while self._sp.piece_to_id(speaker_tag(self.num_speakers)) != UNK_ID:
      self.num_speakers += 1
    if self.num_speakers == 0:
      raise TokenizerError(f"{path}: model has no speaker tags [0].. ; "
                           "train it with TextTokenizer.train")

  # -- construction -----------------------------------------------------------
  @classmethod
  def train(cls, texts: Iterable[str], vocab_size: int, path: str | None,
            num_speakers: int = DEFAULT_NUM_SPEAKERS,
            model_type: str = "unigram") -> "TextTokenizer":
    """Trains on ``texts`` and writes the model to ``path`` (if not None).

    ``vocab_size`` is an upper bound (a small corpus may yield fewer pieces).
    """
    import sentencepiece as spm
    floor = 4 + num_speakers + 256 + _MIN_LEARNED
    if vocab_size < floor:
      raise TokenizerError(f"vocab_size {vocab_size} too small: needs >= "
                           f"{floor} (4 specials + {num_speakers} speaker "
                           f"tags + 256 byte pieces + {_MIN_LEARNED})")
    cleaned = [t.strip() for t in texts if t and t.strip()]
    if not cleaned:
      raise TokenizerError("no training texts (all empty)")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(cleaned), model_writer=model,
        vocab_size=vocab_size, hard_vocab_limit=False, model_type=model_type,
        user_defined_symbols=[speaker_tag(i) for i in range(num_speakers)],
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        character_coverage=1.0, byte_fallback=True, split_digits=True,
        normalization_rule_name="identity", num_threads=1, minloglevel=2)
    proto = model.getvalue()
    if path is not None:
      path = os.fspath(path)
      os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
      with open(path, "wb") as f:
        f.write(proto)
    return cls(proto, path or "<memory>")

  @classmethod
  def load(cls, path: str) -> "TextTokenizer":
    path = os.fspath(path)
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path}: no tokenizer model")
    with open(path, "rb") as f:
      return cls(f.read(), path)

  # -- properties -------------------------------------------------------------
  @property
  def vocab_size(self) -> int:
    return self._sp.get_piece_size()

  pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

  def speaker_token_id(self, speaker_id: int) -> int:
    if not 0 <= speaker_id < self.num_speakers:
      raise TokenizerError(f"speaker id {speaker_id} outside the model's "
                           f"tags [0]..[{self.num_speakers - 1}] ({self.path})")
    return self._sp.piece_to_id(speaker_tag(speaker_id))

  # -- encode / decode --------------------------------------------------------
  def encode(self, text: str, add_bos: bool = False,
             add_eos: bool = False) -> list[int]:
    ids = list(self._sp.encode(text))
    return ([BOS_ID] if add_bos else []) + ids + ([EOS_ID] if add_eos else [])

  def encode_turn(self, speaker_id: int, text: str, add_bos: bool = True,
                  add_eos: bool = True) -> list[int]:
    """Ids of ``"[{speaker_id}]{text}"`` (see module docstring)."""
    tag = self.speaker_token_id(int(speaker_id))
    return (([BOS_ID] if add_bos else []) + [tag]
            + self.encode(text.strip()) + ([EOS_ID] if add_eos else []))

  def decode(self, ids: Sequence[int]) -> str:
    """Text of ``ids``; pad/bos/eos are dropped."""
    keep = [int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)]
    bad = [i for i in keep if not 0 <= i < self.vocab_size]
    if bad:
      raise TokenizerError(f"ids {bad[:5]} outside vocab of {self.vocab_size}")
    # "[3]" + "▁Hello" decodes as "[3] Hello": drop the word-boundary space
    # that encode_turn's separate text encoding introduced after a tag.
    return _TAG_RE.sub(r"[\1]", self._sp.decode(keep))

  def pieces(self, ids: Sequence[int]) -> list[str]:
    return [self._sp.id_to_piece(int(i)) for i in ids]


# -- corpus reading --------------------------------------
def read_corpus_texts(corpus_dir: str) -> Iterator[str]:
  """Texts under ``corpus_dir`` (see module docstring for the layouts)."""
  if not os.path.isdir(corpus_dir):
    raise FileNotFoundError(f"{corpus_dir}: corpus directory does not exist")
  found = False
  for root, _, files in sorted(os.walk(corpus_dir)):
    if "dataset_info.json" in files and "synthetic_dialogues" in root:
      from csm_jax.data.corpora import turns  # pylint: disable=g-import-not-at-top
      found = True
      yield from turns.read_texts(root, split="train")
      continue
    for name in sorted(files):
      p = os.path.join(root, name)
      if name.endswith(".txt"):
        found = True
        with open(p, encoding="utf-8") as f:
          yield from (line.rstrip("\n") for line in f)
      elif name.endswith(".jsonl"):
        found = True
        with open(p, encoding="utf-8") as f:
          for n, line in enumerate(f, 1):
            if not line.strip():
              continue
            try:
              yield json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
              raise TokenizerError(f"{p}:{n}: expected JSON with a 'text' "
                                   f"field ({e})") from e
  if not found:
    raise TokenizerError(f"{corpus_dir}: no *.txt, *.jsonl or prepared "
                         "synthetic_dialogues dataset found")

