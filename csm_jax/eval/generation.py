"""Saying the prompt set with a generator, and the codec's ceiling.

``speak_prompts`` generates every prompt (its context turns, text and
speaker), a few at a time in one batch, each capped at twice its ground
truth's length plus a second (so a model that never ends is caught without
running to the global cap); ``resynthesize`` passes the ground truth through
the codec alone, the best any model predicting these codes can do.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Callable, Sequence

import numpy as np

from csm_jax.config import text_stream
from csm_jax.data.examples.frames import ContextTrimmed
from csm_jax.data.phoneme_tokenizer import known_emotion
from csm_jax.inference.generator import ContextTurn, Control, Sampling


@dataclasses.dataclass
class Spoken:
  audios: list          # float32 at the codec's rate, one per prompt
  eos: list             # stopped on the end-of-speech frame
  seconds: float = 0.0  # wall time of the generation
  trimmed: int = 0      # prompts whose context was cut to fit the model
  styles: list | None = None  # style id each response took (prosody stream)


def context_turns(turns) -> list[ContextTurn]:
  return [ContextTurn(t.speaker, t.text, audio=t.audio,
                      alignment=getattr(t, "alignment", None),
                      emotion=known_emotion(getattr(t, "emotion", None)))
          for t in turns]


def labelled_controls(gen, prompts: Sequence) -> list | None:
  """Each prompt's labelled emotion as its control, for a model that reads
  the emotion tag (``model.emotion_tag``): it is told the emotion it is to
  speak in, as it is told the speaker. None for other models."""
  config = getattr(gen, "config", None)   # any generator-like
  if config is None or not text_stream.emotion_tag(config.model):
    return None
  return [Control(emotion=known_emotion(p.target.emotion)) for p in prompts]


def cap_seconds(truth_s: float, cap: float) -> float:
  """How long a response to a prompt of ``truth_s`` seconds may run: up to
  ``cap`` and twice the truth (plus 1 s), but never less than 1.5x the
  truth (plus 1 s), past the 1.4x that still ends in time: a cap under
  that would count a long prompt as not ending whatever the model does."""
  return float(min(2.0 * truth_s + 1.0, max(cap, 1.5 * truth_s + 1.0)))


def speak_prompts(gen, prompts: Sequence, sampling: Sampling,
                  batch_size: int = 4,
                  progress: Callable[[int, int], None] | None = None,
                  controls: Sequence | None = None) -> Spoken:
  """Generates each prompt once; returns the audio and how each stopped.

  ``controls[i]`` is prompt i's prosody control (None: free; by default
  the labelled emotion for a model with the emotion tag,
  ``labelled_controls``); with the prosody stream the style each response
  took is kept in ``styles``.
  """
  if controls is None:
    controls = labelled_controls(gen, prompts)
  sr = gen.codec.sample_rate
  audios, eos = [None] * len(prompts), [False] * len(prompts)
  styles = [None] * len(prompts)
  t0 = time.perf_counter()
  trimmed = 0
  order = sorted(range(len(prompts)),
                 key=lambda i: len(prompts[i].target.audio))
  for start in range(0, len(order), batch_size):
    group = order[start:start + batch_size]
    caps = [cap_seconds(len(prompts[i].target.audio) / sr,
                        sampling.max_seconds) for i in group]
    s = dataclasses.replace(sampling, max_seconds=max(caps))
    reqs = [(prompts[i].target.text, prompts[i].target.speaker,
             context_turns(prompts[i].context)) for i in group]
    ctl = None if controls is None else [controls[i] or Control()
                                         for i in group]
    parts = [[] for _ in group]
    ended = [False] * len(group)
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      for chunk in gen.stream_batch(reqs, s, ctl):
        for j, c in enumerate(chunk):
          if c is not None:
            parts[j].append(c.audio)
            ended[j] |= c.eos
            if c.style is not None:
              styles[group[j]] = int(c.style)
    # Contexts longer than the trained length lose their oldest turns; the
    # report counts them instead of printing a warning per prompt.
    trimmed += sum(issubclass(w.category, ContextTrimmed) for w in caught)
    for j, i in enumerate(group):
      a = (np.concatenate(parts[j]) if parts[j]
           else np.zeros((0,), np.float32))
      limit = int(caps[j] * sr)
      # A prompt that ran past its own cap (the batch ran to the longest
      # cap) is cut there and counts as not having ended.
      eos[i] = bool(ended[j] and len(a) <= limit)
      audios[i] = np.clip(a[:limit], -1.0, 1.0).astype(np.float32)
    if progress:
      progress(min(start + batch_size, len(order)), len(order))
  on = getattr(gen, "bins", None) is not None
  return Spoken(audios, eos, time.perf_counter() - t0, trimmed,
                styles if on else None)


def resynthesize(codec, audios: Sequence[np.ndarray],
                 n_levels: int | None = None) -> list:
  """Each clip encoded and decoded by the codec (from its first
  ``n_levels`` levels; default all), trimmed to its length."""
  out = []
  for a in audios:
    y = codec.decode(codec.encode(a, n_levels))[:len(a)]
    out.append(np.clip(y, -1.0, 1.0).astype(np.float32))
  return out


def speak_conversation(gen, turns: Sequence, sampling: Sampling,
                       context: Sequence = (), keep_context: int = 5,
                       seed: int = 0) -> list:
  """Generates ``turns`` (speaker, text) one after another, each seeing the
  earlier generated turns (and ``context``) as its context."""
  history = list(context_turns(context))
  out = []
  for k, (speaker, text, cap) in enumerate(turns):
    s = dataclasses.replace(sampling, max_seconds=cap, seed=seed + k)
    r = gen.generate(text, speaker, history[-keep_context:], s)
    a = np.clip(r["audio"], -1.0, 1.0).astype(np.float32)
    out.append(a)
    history.append(ContextTurn(speaker, text, audio=a if len(a) else None,
                               codes=None if len(a) else r["codes"]))
  return out
