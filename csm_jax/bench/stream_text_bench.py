"""Streaming text in against the whole text, on a trained aligned-stream run.

``python -m csm_jax.bench stream_text --workdir=RUN`` says the same texts
(``serve_bench.TEXTS``) two ways, alternating run for run so both see the
same load: given whole (``Generator.stream``) and arriving word by word
(``Generator.stream_text``, each word handed over as soon as it is asked
for). Reported: the real-time factor of each, the median time to first
audio of each, their difference in codec frames (streaming text in should
add no more than one), and whether both gave the same frames.
"""

from __future__ import annotations

import time

import numpy as np

from csm_jax.bench.serve_bench import TEXTS
from csm_jax.inference import aligned
from csm_jax.inference.generator import Sampling
from csm_jax.inference.loading import load_generator


def _words(text: str):
  for w in text.split(" "):
    yield w + " "


def _run(chunks) -> tuple[float, float, np.ndarray, float]:
  t0 = time.perf_counter()
  got = list(chunks)
  wall = time.perf_counter() - t0
  codes = np.concatenate([c.codes for c in got])
  return got[0].elapsed_s, wall, codes, len(codes)


def bench_stream_text(workdir: str, repeats: int = 3,
                      frames_per_call: int = 4) -> dict:
  gen = load_generator(workdir)
  aligned.check_streaming(gen.config)
  s = Sampling(frames_per_call=frames_per_call, max_seconds=8.0)
  first = {"whole": [], "streamed": []}
  rtf = {"whole": [], "streamed": []}
  same = True
  for text in TEXTS[:2]:   # compiles every shape before timing
    list(gen.stream(text, 0, (), s))
    list(gen.stream_text(_words(text), 0, (), s))
  for r in range(repeats):
    for i, text in enumerate(TEXTS):
      seeded = Sampling(frames_per_call=frames_per_call, max_seconds=8.0,
                        seed=r * 100 + i)
      f_w, wall_w, c_w, n_w = _run(gen.stream(text, i % 2, (), seeded))
      f_s, wall_s, c_s, n_s = _run(gen.stream_text(_words(text), i % 2, (),
                                                   seeded))
      same = same and c_w.shape == c_s.shape and bool(np.all(c_w == c_s))
      first["whole"].append(f_w)
      first["streamed"].append(f_s)
      rtf["whole"].append(wall_w / max(n_w * gen.frame_seconds, 1e-9))
      rtf["streamed"].append(wall_s / max(n_s * gen.frame_seconds, 1e-9))
  fw, fs = float(np.median(first["whole"])), float(np.median(first["streamed"]))
  return {"workdir": workdir, "texts": len(TEXTS), "repeats": repeats,
          "frames_per_call": frames_per_call,
          "frame_ms": 1000.0 * gen.frame_seconds,
          "whole_rtf_median": float(np.median(rtf["whole"])),
          "streamed_rtf_median": float(np.median(rtf["streamed"])),
          "whole_first_audio_s_median": fw,
          "streamed_first_audio_s_median": fs,
          "streaming_added_latency_frames": (fs - fw) / gen.frame_seconds,
          "same_frames": same}
