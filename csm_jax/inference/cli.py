"""Library side of ``python -m csm_jax.generate``: prompts in, wavs out.

The generator comes from ``csm_jax.inference.loading.load_generator``.
Context files are JSON lists of turns
``{"speaker": 0, "text": "...", "audio": "turn.wav"}``; batch files are JSONL,
one request per line ``{"text": ..., "speaker": ..., "context": [...],
"out": "name.wav"}``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from csm_jax.audio.io import load_audio, write_wav
from csm_jax.inference.generator import ContextTurn, Generator, Sampling


def read_context(path: str | None, sample_rate: int, base: str = "") -> list:
  if not path:
    return []
  with open(path) as f:
    turns = json.load(f)
  if not isinstance(turns, list):
    raise ValueError(f"{path}: expected a JSON list of turns")
  return parse_turns(turns, sample_rate, os.path.dirname(path) or base, path)


def parse_turns(turns, sample_rate: int, base: str, where: str) -> list:
  out = []
  for i, t in enumerate(turns):
    for field in ("speaker", "text"):
      if field not in t:
        raise ValueError(f"{where}: turn {i} lacks '{field}'")
    audio = None
    if t.get("audio"):
      p = t["audio"] if os.path.isabs(t["audio"]) else os.path.join(base, t["audio"])
      audio = load_audio(p, sample_rate)
    out.append(ContextTurn(int(t["speaker"]), str(t["text"]), audio=audio))
  return out


def speak(gen: Generator, text: str, speaker: int, context, sampling: Sampling,
          out: str, progress=sys.stderr) -> dict:
  """Generates one utterance to ``out`` with a progress line per chunk."""
  chunks = []
  for chunk in gen.stream(text, speaker, context, sampling):
    chunks.append(chunk)
    seconds = sum(len(c.codes) for c in chunks) * gen.frame_seconds
    rtf = chunk.elapsed_s / max(seconds, 1e-9)
    print(f"\r{seconds:5.2f} s of audio in {chunk.elapsed_s:5.2f} s "
          f"(RTF {rtf:.2f})", end="", file=progress, flush=True)
  print(file=progress)
  audio = (np.concatenate([c.audio for c in chunks]) if chunks
           else np.zeros((0,), np.float32))
  write_wav(out, np.clip(audio, -1.0, 1.0), gen.codec.sample_rate)
  seconds = len(audio) / gen.codec.sample_rate
  compute = chunks[-1].elapsed_s if chunks else 0.0
  return {"out": out, "seconds": seconds, "compute_s": compute,
          "first_chunk_s": chunks[0].elapsed_s if chunks else 0.0,
          "frames": int(sum(len(c.codes) for c in chunks))}


def run_batch(gen: Generator, path: str, out_dir: str, sampling: Sampling,
              batch_size: int = 4) -> list[dict]:
  """Generates every request of a JSONL file, ``batch_size`` at a time."""
  with open(path) as f:
    reqs = [json.loads(line) for line in f if line.strip()]
  os.makedirs(out_dir, exist_ok=True)
  results = []
  base = os.path.dirname(path)
  for start in range(0, len(reqs), batch_size):
    group = reqs[start:start + batch_size]
    batch = [(r["text"], int(r.get("speaker", 0)),
              parse_turns(r.get("context", []), gen.codec.sample_rate, base,
                          f"{path} line {start + i + 1}"))
             for i, r in enumerate(group)]
    audio = [[] for _ in group]
    for step in gen.stream_batch(batch, sampling):
      for i, chunk in enumerate(step):
        if chunk is not None:
          audio[i].append(chunk.audio)
    for i, r in enumerate(group):
      name = r.get("out") or f"{start + i:05d}.wav"
      x = np.concatenate(audio[i]) if audio[i] else np.zeros((0,), np.float32)
      write_wav(os.path.join(out_dir, name), np.clip(x, -1, 1),
                gen.codec.sample_rate)
      results.append({"out": name, "seconds": len(x) / gen.codec.sample_rate})
    print(f"{min(start + batch_size, len(reqs))}/{len(reqs)} requests done",
          file=sys.stderr, flush=True)
  return results
