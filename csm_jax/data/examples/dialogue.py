"""CSM training examples from a turn dataset and a codec: context + target turn.

Every turn's audio is tokenized once by the codec and cached beside the
dataset (``<dataset dir>/codes/<codec fingerprint>/<split>-<corpus
fingerprint>.npz``), so a new codec or a rebuilt corpus (new data files)
triggers retokenizing, and nothing else does. An example is a target turn with up to
``context_turns`` previous turns of its conversation, laid out as CSM does
(speaker-tagged text rows, then audio frames, per turn), with the oldest
context dropped to fit; examples are packed greedily into ``seq_len`` rows
by their exact row counts (every turn's text is tokenized once up front), so
packing never cuts a target's frames or its end-of-speech frame.

On the aligned text stream (``text_stream.Aligner``) each turn's tokens
come from its text and their timings from the corpus's phoneme events
(``data.text_alignment``); a turn whose tokens cannot be laid on its
frames is left out (and counted). With ``model.emotion_tag`` each turn's
tag rows end with its emotion's tag, "unknown" for a fixed
``emotion_tag_dropout`` share of turns (drawn once from the seed).
"""

from __future__ import annotations

import copy
import glob
import os
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from csm_jax.config import prosody as prosody_config
from csm_jax.config import text_stream
from csm_jax.data.cache_keys import corpus_fingerprint, fingerprint
from csm_jax.data.examples.frames import (ProsodyLayout, Turn,
                                         conversation_rows, pack)
from csm_jax.data.phoneme_tokenizer import known_emotion
from csm_jax.data.prosody_cache import label_names, prosody_turns
from csm_jax.data.text_alignment import Aligner


class TokenCache:
  """Per-record codec codes of one split, stored as one npz."""

  def __init__(self, codes: list[np.ndarray]):
    self.codes = codes

  @staticmethod
  def path(dataset_dir: str, fingerprint: str, split: str,
           corpus: str = "") -> str:
    name = f"{split}-{corpus}.npz" if corpus else f"{split}.npz"
    return os.path.join(dataset_dir, "codes", fingerprint, name)

  @classmethod
  def load_or_build(cls, source, encode: Callable[[np.ndarray], np.ndarray],
                    path: str, sample_rate: int) -> "TokenCache":
    if os.path.exists(path):
      with np.load(path) as z:
        flat, offsets = z["codes"], z["offsets"]
      return cls([flat[offsets[i]:offsets[i + 1]]
                  for i in range(len(offsets) - 1)])
    from csm_jax.data.corpora.registry import record_audio  # pylint: disable=g-import-not-at-top
    codes = []
    for i in tqdm(range(len(source)), desc=f"tokenizing {os.path.basename(path)}",
                  unit="turn"):
      audio = record_audio(source[i], sample_rate)  # resampled if needed
      codes.append(np.asarray(encode(audio), np.int16))
    offsets = np.cumsum([0] + [len(c) for c in codes])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, codes=np.concatenate(codes), offsets=offsets)
    os.replace(tmp, path)  # never leave a half-written cache behind
    # Caches of this split's earlier builds can never be read again.
    split = os.path.basename(path)[:-len(".npz")].split("-")[0]
    here = os.path.dirname(path)
    for old in (glob.glob(os.path.join(here, f"{split}.npz"))
                + glob.glob(os.path.join(here, f"{split}-*.npz"))):
      if old != path:
        os.remove(old)
    return cls(codes)


def record_emotion(rec, names: Sequence[str] | None) -> str | None:
  """A record's emotion name, or None (unknown): its ``emotion`` field is a
  class index into ``names`` (the corpus's label names) or a name; labels
  outside the tokenizer's emotion tags read as unknown."""
  if "emotion" not in rec:
    return None
  v = rec["emotion"]
  if isinstance(v, (bytes, str)):
    name = v.decode("utf-8") if isinstance(v, bytes) else v
  elif names is not None and 0 <= int(v) < len(names):
    name = names[int(v)]
  else:
    return None
  return known_emotion(name)


class DialogueExamples:
  """Random-access source of packed CSM rows (a grain MapDataset source)."""

  def __init__(self, records: Sequence[dict], codes: TokenCache,
               positions: dict[str, list[int]] | None, encode_turn,
               n_codebooks: int,
               seq_len: int, context_turns: int = 5, loss_on: str = "target",
               seed: int = 0, prosody=None, aligner=None,
               emotion_names: Sequence[str] | None = None,
               emotion_dropout: float = 0.0):
    # ``prosody``: a ``prosody_cache.ProsodyTurns`` of the same records when
    # the prosody stream is on (rows then carry the prosody column).
    self.prosody = prosody
    self.layout = None if prosody is None else ProsodyLayout(
        prosody.bins.unvoiced, prosody.bins.unknown_style)
    if loss_on not in ("target", "all_audio"):
      raise ValueError(f"loss_on must be 'target' or 'all_audio', got {loss_on!r}")
    self.codes = codes
    # Text and speaker of every record, read in one pass (records carry
    # audio, so each decode is costly); the same pass indexes conversations
    # when ``positions`` (conversation -> record positions in turn order) is
    # not given.
    self.meta, turns = [], {}
    self.aligner, self.streams = aligner, []
    tagged = bool(getattr(aligner, "emotion_tag", False))
    dropped = np.random.default_rng([seed, 17]).random(len(records)) < \
        emotion_dropout
    emotions = []
    for i in range(len(records)):
      rec = records[i]
      text = rec["text"]
      text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
      self.meta.append((text, int(rec["speaker_id"])))
      if tagged:
        emotions.append(None if dropped[i] else
                        record_emotion(rec, emotion_names))
      if aligner is not None:
        self.streams.append(aligner.stream(rec, text, len(codes.codes[i])))
      if positions is None:
        cid = rec["conversation_id"]
        cid = cid.decode("utf-8") if isinstance(cid, bytes) else str(cid)
        turns.setdefault(cid, []).append((int(rec["turn_index"]), i))
    if positions is None:
      positions = {c: [p for _, p in sorted(v)] for c, v in turns.items()}
    # Every turn's ids, once: the exact row counts packing needs.
    if aligner is None:
      self.ids = [np.asarray(encode_turn(speaker, text), np.int32)
                  for text, speaker in self.meta]
    else:  # the tag rows; the tokens ride on the frames
      self.ids = [np.asarray(aligner.tag_rows(
          speaker, *(emotions[i:i + 1] if tagged else ())), np.int32)
          for i, (_, speaker) in enumerate(self.meta)]
      usable = [s is not None for s in self.streams]
      self.unaligned = len(usable) - sum(usable)
      positions = {c: [p for p in pos if usable[p]]
                   for c, pos in positions.items()}
    self.n, self.seq_len = n_codebooks, seq_len
    self.context_turns, self.loss_on = context_turns, loss_on
    # (record position, its conversation's positions up to it) per target.
    self.targets = []
    for conv in sorted(positions):
      pos = positions[conv]
      for i, p in enumerate(pos):
        self.targets.append((p, pos[max(0, i - context_turns):i]))
    self.order = np.random.default_rng(seed).permutation(len(self.targets))
    self.plan = self._pack_plan([self.targets[i] for i in self.order])

  def _turn(self, pos: int, trained: bool, target: bool = False) -> Turn:
    codes = self.codes.codes[pos][:, :self.n].astype(np.int32)
    stream = None if self.aligner is None else self.streams[pos]
    if self.prosody is None:
      return Turn(self.ids[pos], codes, trained, stream=stream)
    # Only the target turn's style is given (and predicted): generation
    # knows the style of the turn it speaks, not of the context's turns.
    return Turn(self.ids[pos], codes, trained,
                prosody=self.prosody.tokens(pos, len(codes)),
                style=self.prosody.styles[pos] if target else None,
                stream=stream)

  def _turn_rows(self, pos: int) -> int:
    # Text rows, frames and the end-of-speech frame (frames.turn_rows),
    # and the aligned stream's lead rows.
    lead = 0 if self.aligner is None else self.aligner.lead
    return len(self.ids[pos]) + len(self.codes.codes[pos]) + 1 + lead

  def _kept_context(self, target) -> list[int]:
    """The newest context turns that fit beside the target (the target
    itself may be cut when it alone exceeds ``seq_len``)."""
    pos, ctx = target
    kept, total = list(ctx), self._turn_rows(pos)
    while kept and total + sum(self._turn_rows(p) for p in kept) > \
        self.seq_len:
      kept.pop(0)
    return kept

  def example(self, target) -> dict:
    pos, _ = target
    cur = self._turn(pos, True, target=True)
    context = [self._turn(p, self.loss_on == "all_audio")
               for p in self._kept_context(target)]
    if self.aligner is None:
      return conversation_rows(context + [cur], self.n, prosody=self.layout)
    return conversation_rows(context + [cur], self.n, prosody=self.layout,
                             lead=self.aligner.lead, ahead=self.aligner.ahead)

  def rows(self, target) -> int:
    """Exact rows of ``example(target)`` (at most ``seq_len`` once packed)."""
    pos, _ = target
    return min(self.seq_len, self._turn_rows(pos) + sum(
        self._turn_rows(p) for p in self._kept_context(target)))

  def shorter(self, max_frames: int) -> "DialogueExamples":
    """The same examples restricted to targets of at most ``max_frames``
    frames, packed anew in the same order (the curriculum's first steps,
    ``data.curriculum_steps``)."""
    keep = [self.targets[i] for i in self.order
            if len(self.codes.codes[self.targets[i][0]]) <= max_frames]
    if not keep:
      raise ValueError(f"no turn lasts at most {max_frames} frames; raise "
                       "data.curriculum_max_seconds")
    view = copy.copy(self)
    view.plan = self._pack_plan(keep)
    return view

  def _pack_plan(self, targets) -> list[list]:
    """Greedy packing by exact row counts."""
    plan, cur, used = [], [], 0
    for t in targets:
      r = self.rows(t)
      if cur and used + r > self.seq_len:
        plan.append(cur)
        cur, used = [], 0
      cur.append(t)
      used += r
    if cur:
      plan.append(cur)
    return plan

  def __len__(self) -> int:
    return len(self.plan)

  def __getitem__(self, index: int) -> dict:
    return pack([self.example(t) for t in self.plan[index]], self.seq_len)


def dialogue_source(config, split: str, codec, tokenizer) -> DialogueExamples:
  """Packed CSM examples of one corpus split, tokenized by ``codec``.

  ``codec`` is a ``csm_jax.codec.handle.CodecHandle`` (its directory names
  the token cache); ``tokenizer`` has ``encode_turn(speaker, text)``.
  """
  from csm_jax.data.corpora import registry  # pylint: disable=g-import-not-at-top
  src = registry.source(config, split)
  files = [os.path.join(codec.directory, f)
           for f in ("config.json", "weights.npz")]
  dataset_dir = registry.dataset_dir(config)
  path = TokenCache.path(dataset_dir, fingerprint(files), split,
                         corpus_fingerprint(dataset_dir, split))
  cache = TokenCache.load_or_build(src, codec.encode, path, codec.sample_rate)
  d = config.data
  turns = None
  if prosody_config.enabled(config.model):
    turns = prosody_turns(config, split, codec)
  aligner = None
  if text_stream.aligned(config.model):
    aligner = Aligner(tokenizer, text_stream.lead(config.model),
                      1.0 / codec.frame_rate, dataset_dir,
                      text_stream.lookahead(config.model),
                      text_stream.emotion_tag(config.model))
  tagged = text_stream.emotion_tag(config.model)
  return DialogueExamples(
      src, cache, None, tokenizer.encode_turn, config.model.n_codebooks,
      d.seq_len, d.context_turns, d.loss_on, d.seed, prosody=turns,
      aligner=aligner,
      emotion_names=label_names(dataset_dir) if tagged else None,
      emotion_dropout=(config.model.emotion_tag_dropout if tagged else 0.0))
