"""``Instruments``: the trained recognizer, speaker encoder and emotion
classifier of one corpus, plus prosody tracks, behind plain numpy calls.

Audio at any rate goes through the same front end as training (16 kHz
log-mel). Utterances are batched by length and padded to a few bucket
lengths, so the jitted networks compile once per bucket, and padding never
changes a result (the networks mask it). Every network runs on the whole
utterance: the recognizer's CTC frames cover it end to end, the utterance
networks pool over all of its frames.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Sequence

import jax
import numpy as np
from flax import nnx

from csm_jax.audio import io as audio_lib
from csm_jax.audio.clip_memo import ClipMemo
from csm_jax.data import features as corpus_features
from csm_jax.eval.instruments import charlm
from csm_jax.eval.instruments import ctc
from csm_jax.eval.instruments import frontend
from csm_jax.eval.instruments import scoring

_BATCH = 8
_F0_CLIPS = 1024   # clips whose F0 track is kept (a few KB each)
_MIN_BUCKET = 256     # log-mel frames (2.56 s)


def bucket(n_frames: int) -> int:
  """Padded length for ``n_frames``: multiples of 256 frames up to 1024,
  then steps of half the previous power of two (few shapes to compile)."""
  n = max(int(n_frames), 1)
  if n <= 4 * _MIN_BUCKET:
    return -(-n // _MIN_BUCKET) * _MIN_BUCKET
  step = 1 << (n.bit_length() - 2)
  return -(-n // step) * step


@dataclasses.dataclass
class Network:
  """One trained network: graph, weights and its config section."""

  graphdef: Any
  state: Any
  config: Any            # the instrument section of its run config
  _fns: dict = dataclasses.field(default_factory=dict)

  def fn(self, name: str):
    if name not in self._fns:
      graphdef = self.graphdef

      # The normalizations run inside the compiled network: applied
      # eagerly to each utterance's own length they would compile once
      # per length.
      def run(state, feats, mask):
        model = nnx.merge(graphdef, state)
        if name == "log_probs":
          logits, out_mask = model(feats, mask)
          return jax.nn.log_softmax(logits, axis=-1), out_mask
        emb = model.embed(feats, mask)
        logits = model.logits(emb)
        return emb, logits, jax.nn.softmax(logits, axis=-1)
      self._fns[name] = jax.jit(run)
    return self._fns[name]

  def apply(self, name: str, feats: list[np.ndarray]):
    """Runs ``name`` on utterances of log-mel frames; yields (index, out)."""
    order = np.argsort([len(f) for f in feats], kind="stable")
    for s in range(0, len(order), _BATCH):
      idx = order[s:s + _BATCH]
      t = bucket(max(len(feats[i]) for i in idx))
      x = np.zeros((_BATCH, t, frontend.N_MELS), np.float32)
      m = np.zeros((_BATCH, t), np.bool_)
      for row, i in enumerate(idx):
        x[row, :len(feats[i])], m[row, :len(feats[i])] = feats[i], True
      out = jax.device_get(self.fn(name)(self.state, x, m))
      for row, i in enumerate(idx):
        yield int(i), jax.tree.map(lambda a, r=row: a[r], out)


def _features(audios: Sequence[np.ndarray], sample_rate: int):
  if isinstance(audios, np.ndarray) and audios.ndim == 1:
    raise TypeError("expected a sequence of utterances, got one 1-D array; "
                    "wrap it in a list")
  feats = []
  for a in audios:
    f = frontend.features(np.asarray(a), sample_rate)
    feats.append(f if len(f) else np.full((1, frontend.N_MELS),
                                          frontend.SILENCE, np.float32))
  return feats


class Instruments:
  """The measuring instruments of one corpus (see module docstring).

  ``validity`` holds their accuracy on the corpus's held-out ground truth;
  ``emotion_names`` the class order of ``emotion_probs``; ``speaker_ids``
  the corpus speaker of each row of the speaker encoder's training classes.
  """

  sample_rate: int = frontend.SAMPLE_RATE

  def __init__(self, recognizer: Network, speaker: Network, emotion: Network,
               emotion_names: Sequence[str], validity: dict | None = None,
               directory: str = "", fingerprint: str = "",
               lm: charlm.CharLM | None = None):
    self.recognizer, self.speaker, self.emotion = recognizer, speaker, emotion
    self.lm = lm
    self.emotion_names = tuple(emotion_names)
    self.validity = dict(validity or {})
    self.directory, self.fingerprint = directory, fingerprint
    self._f0s = ClipMemo(_F0_CLIPS)
    ic = recognizer.config.net
    self.seconds_per_frame = ic.stack / ic.upsample / frontend.FRAME_RATE

  # -- recognizer -------------------------------------------------------------
  def _log_probs(self, feats):
    out = [None] * len(feats)
    for i, (log_probs, mask) in self.recognizer.apply("log_probs", feats):
      out[i] = np.asarray(log_probs[:int(mask.sum())])
    return out

  def transcribe(self, audios: Sequence[np.ndarray], sample_rate: int,
                 decoder: str = "lm") -> list[str]:
    """Transcripts, normalized as ``text_metrics.normalize``.

    ``decoder="lm"`` (default) is CTC beam search with the corpus's
    character n-gram model (``charlm``), "greedy" the best path alone; the
    validity of both is in ``validity["recognizer"]``.
    """
    if decoder not in ("lm", "greedy"):
      raise ValueError(f"decoder must be 'lm' or 'greedy', got {decoder!r}")
    lps = self._log_probs(_features(audios, sample_rate))
    if decoder == "greedy" or self.lm is None:
      return [ctc.greedy_decode(lp) for lp in lps]
    return [charlm.beam_decode(lp, self.lm) for lp in lps]

  def ctc_log_probs(self, audio: np.ndarray, sample_rate: int
                    ) -> tuple[np.ndarray, float, str, int]:
    """(log_probs, seconds_per_frame, alphabet, blank) of one utterance.

    ``log_probs`` is (frames, len(alphabet)); ``alphabet[k]`` is column k's
    character, and column ``blank`` (``ctc.BLANK`` = 0, written "_" in the
    alphabet) is the CTC blank. Frame t covers the audio around
    ``t * seconds_per_frame`` (for CTC forced alignment: word timings).
    """
    lps, spf, alphabet, blank = self.ctc_log_probs_many([audio], sample_rate)
    return lps[0], spf, alphabet, blank

  def ctc_log_probs_many(self, audios: Sequence[np.ndarray], sample_rate: int
                         ) -> tuple[list[np.ndarray], float, str, int]:
    """``ctc_log_probs`` of many utterances, batched by length: one call
    per utterance would run the recognizer on a batch of one padded row."""
    lps = self._log_probs(_features(audios, sample_rate))
    return lps, self.seconds_per_frame, ctc.ALPHABET, ctc.BLANK

  # -- speaker and emotion ----------------------------------------------------
  def speaker_embeddings(self, audios: Sequence[np.ndarray],
                         sample_rate: int) -> np.ndarray:
    """(n, D) L2-normalized utterance embeddings; cosine = similarity."""
    feats = _features(audios, sample_rate)
    dim = int(self.speaker.config.net.embed_dim)
    out = np.zeros((len(feats), dim), np.float32)
    for i, (emb, _, _) in self.speaker.apply("utterance", feats):
      out[i] = emb
    return scoring.l2_normalize(out)

  def emotion_probs(self, audios: Sequence[np.ndarray],
                    sample_rate: int) -> np.ndarray:
    """(n, len(emotion_names)) class probabilities from audio alone."""
    feats = _features(audios, sample_rate)
    out = np.zeros((len(feats), len(self.emotion_names)), np.float32)
    for i, (_, _, probs) in self.emotion.apply("utterance", feats):
      out[i] = probs
    return out

  # -- prosody ----------------------------------------------------------------
  def prosody(self, audio: np.ndarray, sample_rate: int,
              text: str = "") -> dict:
    """F0 (Hz, NaN where unvoiced), voicing and level (dBFS) every 40 ms,
    with frame times, and the speaking rate: syllables and words per second
    of ``text`` (or, when empty, of the recognizer's transcript) over the
    utterance's duration."""
    x = np.asarray(audio)
    if x.dtype == np.int16:
      x = audio_lib.from_int16(x)
    x = np.asarray(x, np.float32).reshape(-1)
    # Computed once per distinct clip: a report tracks each prompt's
    # context turn once per row, and pYIN is most of a small suite's
    # scoring time.
    f0, voiced = self._f0s.get(
        x, lambda: corpus_features.f0_track(x, sample_rate), sample_rate)
    y = audio_lib.resample(x, sample_rate, corpus_features.F0_SR)
    hop, frame = corpus_features.F0_HOP, corpus_features.F0_FRAME
    # Frames centred as pyin's are (frame t around sample t * hop).
    padded = np.pad(y, (frame // 2, frame // 2 + len(f0) * hop)).astype(
        np.float64)
    segs = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop]
    energy = (10 * np.log10(np.mean(segs[:len(f0)] ** 2, axis=1) + 1e-12)
              ).astype(np.float32)
    duration = x.size / sample_rate
    if not text and x.size:
      text = self.transcribe([x], sample_rate)[0]
    words = len(re.findall(r"[A-Za-z']+", text))
    rate = duration if duration > 0 else np.inf
    return {"f0_hz": f0, "voiced": voiced, "energy_db": energy,
            "times_s": np.arange(len(f0), dtype=np.float32) * hop
            / corpus_features.F0_SR,
            "duration_s": float(duration),
            "syllables_per_s": corpus_features.count_syllables(text) / rate,
            "words_per_s": words / rate, "text": text}
