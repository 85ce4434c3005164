"""Rows of a training example with the dual memory (``model.memory``).

With the memory on, a batch row holds one example (no packing: the prefix
is the whole row's, and two conversations must not share one), laid out as
without it: context turns + target turn, trimmed to ``seq_len``. Beside it
come the ``memory.turns`` (K) turns before the target, oldest first and
left-padded with empty turns, each laid out alone as a turn is
(``frames.turn_rows``) and cut to ``memory.turn_rows`` (R) rows: its text
rows first, then its first frames. They overlap the context: the memory
holds every earlier turn, the context only the newest that fit, so at
generation the memory is written with every turn as it is added.

On the aligned text stream (``ahead`` given) a memory turn keeps that
order, text first, in the aligned stream's text shape
(``aligned_memory_rows``): training and generation both lay it out here.

Per-turn prosody features (``memory_features``) are the corpus's prosody
fields under one fixed normalization (centres and scales below, the same
for every corpus, so generation needs no fitted statistics).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from csm_jax.config import memory as memory_config
from csm_jax.config import text_stream
from csm_jax.data import features as feats_lib
from csm_jax.data.batch import FieldSpec
from csm_jax.data.examples.frames import END_OF_TEXT, Turn, pack, turn_rows

SEMANTIC_DIM = feats_lib.SEMANTIC_DIM
# (field, centre, scale, log): roughly the synthetic corpus's mean and
# standard deviation, fixed here; values are clipped to +-CLIP.
FEATURE_NORMALIZATION = (
    ("f0_mean_st", 6.0, 8.0, False),
    ("f0_std_st", 1.5, 0.8, False),
    ("f0_range_st", 4.5, 2.7, False),
    ("f0_slope_st_per_s", -0.5, 1.7, False),
    ("voiced_ratio", 0.7, 0.27, False),
    ("rms_db", -22.6, 2.3, False),
    ("duration_s", 5.5, 0.6, True),
    ("words_per_s", 2.9, 0.7, False),
    ("syllables_per_s", 4.3, 1.0, False),
)
CLIP = 5.0
assert len(FEATURE_NORMALIZATION) == memory_config.PROSODY_FEATURES

TURN_FIELDS = ("memory_audio_tokens", "memory_text_tokens", "memory_mask",
               "memory_valid", "memory_features", "memory_features_present",
               "memory_speaker")
TARGET_FIELDS = ("memory_target_rows", "memory_target_semantic",
                 "memory_target_features", "memory_target_features_present",
                 "memory_target_speaker")


def memory_features(prosody) -> np.ndarray:
  """(F,) float32 normalized features from a corpus prosody vector (the
  ``features.PROSODY_FIELDS`` order) or a dict of those fields."""
  if not isinstance(prosody, dict):
    vec = np.asarray(prosody, np.float64).reshape(-1)
    if vec.shape[0] != len(feats_lib.PROSODY_FIELDS):
      raise ValueError(f"a prosody vector has {len(feats_lib.PROSODY_FIELDS)}"
                       f" fields ({', '.join(feats_lib.PROSODY_FIELDS)}), "
                       f"got {vec.shape[0]}")
    prosody = dict(zip(feats_lib.PROSODY_FIELDS, vec))
  out = np.zeros((len(FEATURE_NORMALIZATION),), np.float32)
  for i, (name, centre, scale, log) in enumerate(FEATURE_NORMALIZATION):
    x = float(prosody[name])
    if log:
      x = np.log(max(x, 1e-3)) - np.log(centre)
      centre = 0.0
    out[i] = np.clip((x - centre) / scale, -CLIP, CLIP)
  return out


def aligned_memory_rows(turn: Turn, n_codebooks: int, ahead: int) -> dict:
  """A memory turn's rows on the aligned text stream: audio (T, N), text
  (T, 1 + ahead), mask (T, N+1).

  ``turn`` is held as the aligned stream holds a turn: ``text_ids`` its
  tag rows, ``stream[0]`` its text tokens (their timings are not read).
  The rows begin as the turn's aligned rows begin (tag rows without
  lookahead, then each token with the ``ahead`` tokens after it), but walk
  through the whole text, one token per row and end-of-text last, before
  the first frame; the frames and the end-of-speech frame then follow,
  showing end-of-text, as the aligned stream's rows after the text do.

  Why not the aligned layout itself (text on its frames): a memory turn is
  cut to ``memory.turn_rows`` rows, and on the frames the cut would drop
  the end of a long turn's text, which the semantic bank reads; the bank
  would also read the turn's audio (every aligned row holds a frame once
  the lead has passed), where text first keeps it on the words alone; and
  a turn known by its words only (``Conversation.add_turn`` without audio)
  has no frames to lay them on. Text first needs no timings either, so
  every earlier turn is written, aligned or not, in training as at
  generation. The rows are those of the prefix stream's memory turn
  (same count, same cut), in the text shape the model reads.
  """
  if turn.stream is None:
    raise ValueError("an aligned memory turn needs its text tokens "
                     "(Turn.stream)")
  tags = len(turn.text_ids)
  ids = np.concatenate([np.asarray(turn.text_ids, np.int32),
                        np.asarray(turn.stream[0], np.int32),
                        [END_OF_TEXT]]).astype(np.int32)
  r = turn_rows(Turn(ids, turn.codes, False), n_codebooks)
  t = len(ids)
  text = np.full((len(r["text_tokens"]), 1 + ahead), END_OF_TEXT, np.int32)
  padded = np.concatenate([ids, np.full((ahead,), END_OF_TEXT, np.int32)])
  for j in range(1 + ahead):
    text[:t, j] = padded[j:j + t]
  text[:tags, 1:] = 0   # tag rows: no lookahead (pad), as aligned rows
  mask = r["mask"].copy()
  mask[:, -1] = True    # every aligned row shows text
  return {"audio_tokens": r["audio_tokens"], "text_tokens": text,
          "mask": mask}


def memory_turn_rows(turn: Turn | None, n_codebooks: int, rows: int,
                     ahead: int | None = None) -> dict:
  """One memory turn's rows cut (or padded) to ``rows``: audio (R, N), text
  (R,), mask (R, N+1); an absent turn (None) is all padding. With
  ``ahead`` (the aligned text stream's lookahead) the text is (R, 1 +
  ahead), laid out by ``aligned_memory_rows``."""
  audio = np.zeros((rows, n_codebooks), np.int32)
  text = np.zeros((rows,) if ahead is None else (rows, 1 + ahead), np.int32)
  mask = np.zeros((rows, n_codebooks + 1), bool)
  if turn is not None:
    r = (turn_rows(Turn(turn.text_ids, turn.codes, False), n_codebooks)
         if ahead is None else aligned_memory_rows(turn, n_codebooks, ahead))
    k = min(rows, len(r["text_tokens"]))
    audio[:k], text[:k], mask[:k] = (r["audio_tokens"][:k],
                                     r["text_tokens"][:k], r["mask"][:k])
  return {"audio_tokens": audio, "text_tokens": text, "mask": mask}


def memory_fields(turns: Sequence[Turn], features: Sequence, speakers:
                  Sequence[int], n_codebooks: int, k: int, rows: int,
                  ahead: int | None = None) -> dict:
  """The ``TURN_FIELDS`` of up to ``k`` earlier turns (oldest first).

  ``features``: per turn a (F,) vector (``memory_features``) or None;
  ``speakers``: per turn its speaker id; ``ahead``: the aligned text
  stream's lookahead (``memory_turn_rows``). Only the newest ``k`` are
  kept; fewer are left-padded with empty turns.
  """
  turns, features, speakers = (list(turns)[-k:] if k else [],
                               list(features)[-k:] if k else [],
                               list(speakers)[-k:] if k else [])
  pad = k - len(turns)
  n_feat = memory_config.PROSODY_FEATURES
  out = {"memory_audio_tokens": np.zeros((k, rows, n_codebooks), np.int32),
         "memory_text_tokens": np.zeros(
             (k, rows) + (() if ahead is None else (1 + ahead,)), np.int32),
         "memory_mask": np.zeros((k, rows, n_codebooks + 1), bool),
         "memory_valid": np.zeros((k,), bool),
         "memory_features": np.zeros((k, n_feat), np.float32),
         "memory_features_present": np.zeros((k,), bool),
         "memory_speaker": np.full((k,), -1, np.int32)}
  for j, (turn, feat, spk) in enumerate(zip(turns, features, speakers)):
    i = pad + j
    r = memory_turn_rows(turn, n_codebooks, rows, ahead)
    out["memory_audio_tokens"][i] = r["audio_tokens"]
    out["memory_text_tokens"][i] = r["text_tokens"]
    out["memory_mask"][i] = r["mask"]
    out["memory_valid"][i] = True
    if feat is not None:
      out["memory_features"][i] = feat
      out["memory_features_present"][i] = True
    out["memory_speaker"][i] = spk
  return out


def target_fields(example: dict, seq_len: int, target: Turn, semantic,
                  feature, speaker: int) -> dict:
  """The ``TARGET_FIELDS`` of an (unpacked) example whose last turn is
  ``target``: its audio rows within the first ``seq_len`` rows, its
  semantic vector (None: zeros), its features (None: absent) and speaker."""
  n = len(example["text_tokens"])
  frames = 0 if target.codes is None else len(target.codes) + 1
  rows = np.zeros((seq_len,), bool)
  rows[max(0, n - frames):min(n, seq_len)] = True
  sem = (np.zeros((SEMANTIC_DIM,), np.float32) if semantic is None
         else np.asarray(semantic, np.float32).reshape(-1))
  if sem.shape != (SEMANTIC_DIM,):
    raise ValueError(f"a semantic vector has {SEMANTIC_DIM} values, got "
                     f"{sem.shape[0]}")
  n_feat = memory_config.PROSODY_FEATURES
  return {"memory_target_rows": rows,
          "memory_target_semantic": sem,
          "memory_target_features": (np.zeros((n_feat,), np.float32)
                                     if feature is None
                                     else np.asarray(feature, np.float32)),
          "memory_target_features_present": np.asarray(feature is not None),
          "memory_target_speaker": np.asarray(speaker, np.int32)}


def memory_example(example: dict, seq_len: int, history: dict,
                   target_extra: dict) -> dict:
  """One batch row: the example padded to ``seq_len`` (``frames.pack`` of
  one example), its memory turns and its target fields."""
  row = pack([example], seq_len)
  row.update(history)
  row.update(target_extra)
  return row


def memory_batch_spec(config) -> dict[str, FieldSpec]:
  """The fields a memory batch adds to ``batch.csm_batch_spec``."""
  m, d = config.model, config.data
  mem = m.memory
  k, r, n, t = mem.turns, mem.turn_rows, m.n_codebooks, d.seq_len
  f = memory_config.PROSODY_FEATURES
  text = FieldSpec((k, r), np.int32, ("batch", None, "seq"), 0, m.text_vocab)
  if text_stream.aligned(m):   # each row's token and its lookahead
    text = FieldSpec((k, r, 1 + text_stream.lookahead(m)), np.int32,
                     ("batch", None, "seq", None), 0, m.text_vocab)
  return {
      "memory_audio_tokens": FieldSpec((k, r, n), np.int32,
                                       ("batch", None, "seq", None),
                                       0, m.audio_vocab),
      "memory_text_tokens": text,
      "memory_mask": FieldSpec((k, r, n + 1), np.bool_,
                               ("batch", None, "seq", None)),
      "memory_valid": FieldSpec((k,), np.bool_, ("batch", None)),
      "memory_features": FieldSpec((k, f), np.float32, ("batch", None, None)),
      "memory_features_present": FieldSpec((k,), np.bool_, ("batch", None)),
      "memory_speaker": FieldSpec((k,), np.int32, ("batch", None), -1, None),
      "memory_target_rows": FieldSpec((t,), np.bool_, ("batch", "seq")),
      "memory_target_semantic": FieldSpec((SEMANTIC_DIM,), np.float32,
                                          ("batch", None)),
      "memory_target_features": FieldSpec((f,), np.float32, ("batch", None)),
      "memory_target_features_present": FieldSpec((), np.bool_, ("batch",)),
      "memory_target_speaker": FieldSpec((), np.int32, ("batch",), -1, None),
  }
