"""A conversation with a model: turns in, spoken replies out, memory carried.

``Conversation(generator)`` keeps the turns so far and, for a model with
the dual memory (``model.memory``), its ``MemoryState``: every turn is
written into the memory once, when it is added (one compiled update, the
same cost at every turn), and each reply is generated with that memory as
its prefix and the newest turns as its context, as the model was trained.

  conv = Conversation(load_generator("runs/memory"))
  conv.add_turn("Are you coming tonight?", speaker=0, audio=wav)
  out = conv.reply("I wouldn't miss it.", speaker=1)   # out["audio"]

``add_turn`` without audio records what was said but not how: the memory
reads its text, and it stays out of the prompt (whose turns need frames).
``run_script`` is ``python -m csm_jax.generate --conversation=script.jsonl``:
one turn per line, ``{"speaker": 0, "text": ..., "audio": "a.wav"}`` for a
recorded turn, without ``audio`` for one the model speaks; it writes a wav
per spoken turn and ``dialogue.wav``, every turn in order.

Between replies the conversation keeps the backbone's KV cache
(``inference.prefix_cache``): a reply prefills only its own text rows, the
turns that leave the window leave the cache, and the memory's prefix is
rewritten, so the cost of a turn does not grow with the conversation.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from csm_jax.audio.io import load_audio, write_wav
from csm_jax.config import text_stream
from csm_jax.inference.cli import (GenerationError, RequestError,
                                   check_sampling, jsonl_turns)
from csm_jax.inference.generator import ContextTurn, Generator, Sampling
from csm_jax.inference.memory import MemoryTurn, memory_turn
from csm_jax.inference.prefix_cache import PromptCache
from csm_jax.model import memory as memory_lib


DIALOGUE_GAP_S = 0.3   # silence between turns in dialogue.wav


class Conversation:
  """Turns and memory of one conversation (see the module docstring)."""

  def __init__(self, generator: Generator, sampling: Sampling = Sampling(),
               context_turns: int | None = None, prefix_cache: bool = True):
    self.gen, self.sampling = generator, sampling
    # Replies decode from the kept KV cache (inference.prefix_cache); the
    # prosody stream's columns are not cached, so it prefills every reply;
    # so does the aligned text stream, whose rows the cache does not lay.
    self.cache = (PromptCache(generator)
                  if prefix_cache and generator.bins is None
                  and not text_stream.aligned(generator.config.model)
                  else None)
    self.context_turns = (generator.config.data.context_turns
                          if context_turns is None else int(context_turns))
    self.turns: list[ContextTurn] = []
    self.memory = (None if generator.memory is None
                   else generator.memory.init(1))

  def _check(self, text: str, speaker: int) -> None:
    if not isinstance(text, str) or not text.strip():
      raise RequestError("a turn's text must be a non-empty string")
    if isinstance(speaker, bool) or int(speaker) != speaker or speaker < 0:
      raise RequestError(f"a speaker is an integer >= 0, got {speaker!r}")

  def _remember(self, turn: ContextTurn) -> None:
    if self.memory is None:
      return
    mt = (self.gen.memory_turn(turn) if turn.codes is not None
          else _words_only(self.gen, turn))
    self.memory = self.gen.memory.write(self.memory, [mt])

  def add_turn(self, text: str, speaker: int,
               audio: np.ndarray | None = None,
               alignment: tuple | None = None) -> ContextTurn:
    """Adds a turn (``audio``: float32 mono at the codec's rate, or None
    for a turn known by its words only) and writes it into the memory.
    ``alignment``: the (phoneme symbols, start seconds) of the audio, which
    an aligned-stream prompt lays its tokens by (``ContextTurn``)."""
    self._check(text, speaker)
    turn = ContextTurn(int(speaker), text)
    if audio is not None:
      audio = np.asarray(audio, np.float32).reshape(-1)
      if not len(audio):
        raise RequestError(f"turn {len(self.turns)}: the audio is empty")
      # Encoded once: the memory and every later prompt reuse the codes.
      codes = np.asarray(self.gen.codec.encode(audio))[:, :self.gen.n]
      turn = ContextTurn(int(speaker), text, audio=audio, codes=codes,
                         alignment=alignment)
    self._remember(turn)
    self.turns.append(turn)
    return turn

  def context(self) -> list[ContextTurn]:
    """The newest turns with audio, at most ``context_turns`` of them (the
    generator trims further to the model's length)."""
    spoken = [t for t in self.turns if t.codes is not None]
    return spoken[-self.context_turns:] if self.context_turns else []

  def reply(self, text: str, speaker: int, allow_empty: bool = False
            ) -> dict:
    """The model says ``text`` as ``speaker``; the reply becomes a turn.

    Returns {"audio", "codes", "seconds", "eos", "memory_turns",
    "first_chunk_s"}. A reply of no frame is an error, or with
    ``allow_empty`` a turn known by its words only.
    """
    self._check(text, speaker)
    check_sampling(self.gen, self.sampling)
    request = (text, int(speaker), self.context())
    if self.memory is not None:
      request = request + (self.memory,)
    final = {}
    if self.cache is None:
      stream = self.gen.stream_batch([request], self.sampling)
    else:
      state = self.cache.prepare(request[2], text, int(speaker), self.memory,
                                 self.sampling)
      stream = self.gen.decode_from(state, request, self.sampling, final)
    chunks = [c[0] for c in stream if c[0] is not None]
    codes = (np.concatenate([c.codes for c in chunks]) if chunks
             else np.zeros((0, self.gen.n), np.int32))
    if not len(codes) and not allow_empty:
      raise GenerationError(f"turn {len(self.turns)}: no audio was generated "
                            "(the model ended speech at the first frame)")
    audio = (np.concatenate([c.audio for c in chunks]) if chunks
             else np.zeros((0,), np.float32))
    turn = (ContextTurn(int(speaker), text, audio=audio, codes=codes)
            if len(codes) else ContextTurn(int(speaker), text))
    if self.cache is not None:
      self.cache.finish(final.get("state", state), turn if len(codes) else None,
                        len(codes))
    self._remember(turn)
    self.turns.append(turn)
    return {"audio": audio, "codes": codes,
            "seconds": len(codes) * self.gen.frame_seconds,
            "eos": any(c.eos for c in chunks),
            "first_chunk_s": chunks[0].elapsed_s if chunks else float("nan"),
            "memory_turns": (0 if self.memory is None
                             else int(np.asarray(self.memory.turns)[0]))}

  def memory_arrays(self) -> dict | None:
    """The memory as plain arrays (``model.memory.state_from_numpy``)."""
    return None if self.memory is None else \
        memory_lib.state_to_numpy(self.memory)


def _words_only(gen: Generator, turn: ContextTurn) -> MemoryTurn:
  """A words-only turn as the memory writes it: text rows, no frames."""
  return memory_turn(gen.config, gen.tokenizer, turn.speaker, turn.text,
                     np.zeros((0, gen.n), np.int32))


def read_script(path: str) -> list[dict]:
  """The turns of a conversation script (JSONL), each line checked."""
  turns = []
  for where, t in jsonl_turns(path, "'speaker' and 'text'"):
    spk = t.get("speaker")
    if isinstance(spk, bool) or not isinstance(spk, int) or spk < 0:
      raise RequestError(f"{where}: 'speaker' must be an integer >= 0, "
                         f"got {spk!r}")
    if t.get("audio") is not None and not isinstance(t["audio"], str):
      raise RequestError(f"{where}: 'audio' must be a wav path")
    turns.append(t)
  if not turns:
    raise RequestError(f"{path}: the conversation script holds no turn")
  if all(t.get("audio") for t in turns):
    raise RequestError(f"{path}: every turn has audio; give at least one "
                       "turn without 'audio' for the model to speak")
  return turns


def run_script(gen: Generator, path: str, out_dir: str,
               sampling: Sampling, turns: list[dict] | None = None,
               progress=sys.stderr) -> dict:
  """Plays a conversation script; the model speaks the turns without
  audio, into ``out_dir/NNN_speakerS.wav``. Returns a summary."""
  turns = read_script(path) if turns is None else turns
  base = os.path.dirname(path)
  os.makedirs(out_dir, exist_ok=True)
  sr = gen.codec.sample_rate
  conv = Conversation(gen, sampling)
  rows, dialogue = [], []
  gap = np.zeros((int(DIALOGUE_GAP_S * sr),), np.float32)
  for i, t in enumerate(turns):
    if t.get("audio"):
      p = t["audio"] if os.path.isabs(t["audio"]) else os.path.join(
          base, t["audio"])
      audio = load_audio(p, sr)
      conv.add_turn(t["text"], t["speaker"], audio)
      rows.append({"turn": i, "speaker": t["speaker"], "audio": p})
      dialogue += [np.clip(audio, -1.0, 1.0), gap]
      continue
    out = conv.reply(t["text"], t["speaker"])
    wav = os.path.join(out_dir, f"{i:03d}_speaker{t['speaker']}.wav")
    audio = np.clip(out["audio"], -1.0, 1.0)
    write_wav(wav, audio, sr)
    dialogue += [audio, gap]
    rows.append({"turn": i, "speaker": t["speaker"], "out": wav,
                 "seconds": round(out["seconds"], 3), "eos": out["eos"],
                 "first_audio_s": round(out["first_chunk_s"], 4),
                 "memory_turns": out["memory_turns"]})
    print(f"turn {i}: speaker {t['speaker']}, {out['seconds']:.2f} s, first "
          f"audio after {1e3 * out['first_chunk_s']:.0f} ms -> {wav}",
          file=progress, flush=True)
  whole = os.path.join(out_dir, "dialogue.wav")
  write_wav(whole, np.concatenate(dialogue).astype(np.float32), sr)
  summary = {"script": path, "turns": rows, "dialogue": whole,
             "memory": gen.memory is not None,
             "prefix_cache": None if conv.cache is None
             else dict(conv.cache.stats)}
  with open(os.path.join(out_dir, "conversation.json"), "w",
            encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  return summary
