"""Recognizers and speaker encoders read from local ``transformers`` model
directories: Whisper (``WhisperForConditionalGeneration`` with its
processor), any CTC model (``AutoModelForCTC`` with its processor, e.g.
wav2vec 2.0) and x-vector speaker models (``AutoModelForAudioXVector``).

Everything loads with ``local_files_only=True``: no hub is reachable here
or in CI, and a run must not change because a hub did. torch and
transformers are imported when a model is loaded, never at import time.
Transcripts come back normalized as the corpus-trained recognizer's
(``text_metrics.normalize``), so CER/WER compare like with like.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from csm_jax.eval import text_metrics
from csm_jax.eval.instruments import model_dirs
from csm_jax.eval.instruments import scoring

_WHISPER_SECONDS = 30.0   # Whisper's encoder sees at most 30 s
_BATCH = 8
_WHY_CHARS = 240


def _libraries(flag: str, what: str):
  torch = model_dirs.require("torch", flag, what)
  transformers = model_dirs.require("transformers", flag, what)
  # Loading prints progress bars and advice meant for notebooks; a report's
  # log keeps the evaluation's own lines.
  transformers.logging.set_verbosity_error()
  transformers.logging.disable_progress_bar()
  return torch, transformers


def _load(flag: str, model_dir: model_dirs.ModelDir, load):
  try:
    return load(model_dir.path, local_files_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # The directory is the user's input, and a bad one fails in any of
    # transformers' readers (safetensors' own error type, shape mismatches,
    # missing processor files): each is a fault of the files, reported as
    # one line (--traceback shows where).
    first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
    if len(first) > _WHY_CHARS:   # the line must keep the path at its end
      first = first[:_WHY_CHARS - 3] + "..."
    raise model_dirs.ModelDirError(
        f"{flag}: the {model_dir.architecture} model cannot be loaded: "
        f"{first} ({model_dir.path})") from e


def _pieces(x: np.ndarray, rate: int, seconds: float) -> list[np.ndarray]:
  """``x`` cut into pieces of at most ``seconds``, each cut at the quietest
  50 ms of the piece's last quarter (rather than inside a word)."""
  limit = int(seconds * rate)
  out = []
  while len(x) > limit:
    hop = max(1, rate // 20)
    tail = x[limit * 3 // 4:limit]
    n = len(tail) // hop
    energy = (tail[:n * hop].reshape(n, hop) ** 2).sum(axis=1)
    cut = limit * 3 // 4 + int(np.argmin(energy)) * hop + hop // 2
    out.append(x[:cut])
    x = x[cut:]
  out.append(x)
  return out


class WhisperRecognizer:
  """A Whisper model directory as the suite's recognizer: English
  transcription, greedy decoding, utterances over 30 s in pieces."""

  def __init__(self, model_dir: model_dirs.ModelDir,
               flag: str = "--recognizer"):
    self.torch, tf = _libraries(flag, "a Whisper recognizer")
    self.model_dir = model_dir
    self.processor = _load(flag, model_dir, tf.WhisperProcessor.from_pretrained)
    self.model = _load(flag, model_dir,
                       tf.WhisperForConditionalGeneration.from_pretrained)
    self.model.eval()
    self.rate = int(self.processor.feature_extractor.sampling_rate)
    gc = self.model.generation_config
    self.generate_kwargs = {
        "max_new_tokens": max(1, int(self.model.config.max_target_positions)
                              - 8), "num_beams": 1, "do_sample": False}
    # A multilingual checkpoint is told the language and task; an
    # English-only one refuses both.
    if getattr(gc, "is_multilingual", False) and "<|en|>" in (
        getattr(gc, "lang_to_id", None) or {}):
      self.generate_kwargs.update(language="en", task="transcribe")

  def describe(self) -> str:
    return f"whisper {self.model_dir.describe()}, greedy"

  def _batch(self, clips: list[np.ndarray]) -> list[str]:
    feats = self.processor.feature_extractor(
        clips, sampling_rate=self.rate, return_tensors="pt")
    with self.torch.inference_mode():
      ids = self.model.generate(feats.input_features, **self.generate_kwargs)
    return self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)

  def transcribe(self, audios: Sequence[np.ndarray],
                 sample_rate: int) -> list[str]:
    pieces, owner = [], []
    for i, a in enumerate(audios):
      x = model_dirs.mono_at(a, sample_rate, self.rate)
      if len(x):
        for p in _pieces(x, self.rate, _WHISPER_SECONDS):
          pieces.append(p)
          owner.append(i)
    texts = [""] * len(pieces)
    # Similar lengths together: generation runs as long as the longest.
    order = np.argsort([len(p) for p in pieces], kind="stable")
    for s in range(0, len(order), _BATCH):
      idx = order[s:s + _BATCH]
      for i, t in zip(idx, self._batch([pieces[i] for i in idx])):
        texts[i] = t
    out = [[] for _ in audios]
    for i, t in zip(owner, texts):
      out[i].append(t)
    return [text_metrics.normalize(" ".join(t)) for t in out]


class CTCRecognizer:
  """A CTC model directory (``AutoModelForCTC``) as the suite's recognizer:
  best path, decoded by the model's own processor."""

  def __init__(self, model_dir: model_dirs.ModelDir,
               flag: str = "--recognizer"):
    self.torch, tf = _libraries(flag, "a CTC recognizer")
    self.model_dir = model_dir
    self.processor = _load(flag, model_dir, tf.AutoProcessor.from_pretrained)
    if not (hasattr(self.processor, "tokenizer")
            and hasattr(self.processor, "feature_extractor")):
      raise model_dirs.ModelDirError(
          f"{flag}: {model_dir.path} has no processor with both a feature "
          "extractor and a tokenizer, which a CTC model's transcripts "
          "need (save both with its processor's save_pretrained) "
          f"({model_dir.path})")
    self.model = _load(flag, model_dir, tf.AutoModelForCTC.from_pretrained)
    self.model.eval()
    self.rate = int(self.processor.feature_extractor.sampling_rate)

  def describe(self) -> str:
    return f"ctc {self.model_dir.describe()}, greedy"

  def transcribe(self, audios: Sequence[np.ndarray],
                 sample_rate: int) -> list[str]:
    out = []
    # One utterance at a time: models trained without an attention mask
    # (wav2vec 2.0 base) read zero padding as audio.
    for a in audios:
      x = model_dirs.mono_at(a, sample_rate, self.rate)
      if not len(x):
        out.append("")
        continue
      inputs = self.processor(x, sampling_rate=self.rate, return_tensors="pt")
      with self.torch.inference_mode():
        logits = self.model(inputs.input_values).logits
      ids = logits.argmax(dim=-1)[0].tolist()
      out.append(text_metrics.normalize(self.processor.decode(ids)))
    return out


class XVectorEncoder:
  """An x-vector model directory (``AutoModelForAudioXVector``) as the
  suite's speaker encoder: one L2-normalized embedding per utterance."""

  def __init__(self, model_dir: model_dirs.ModelDir,
               flag: str = "--speaker_model"):
    self.torch, tf = _libraries(flag, "an x-vector speaker encoder")
    self.model_dir = model_dir
    self.extractor = _load(flag, model_dir,
                           tf.AutoFeatureExtractor.from_pretrained)
    self.model = _load(flag, model_dir,
                       tf.AutoModelForAudioXVector.from_pretrained)
    self.model.eval()
    self.rate = int(self.extractor.sampling_rate)

  def describe(self) -> str:
    return f"x-vector {self.model_dir.describe()}"

  def speaker_embeddings(self, audios: Sequence[np.ndarray],
                         sample_rate: int) -> np.ndarray:
    rows = []
    for a in audios:
      x = model_dirs.mono_at(a, sample_rate, self.rate)
      # The convolutional front end needs some samples even for silence.
      x = np.pad(x, (0, max(0, self.rate // 10 - len(x))))
      inputs = self.extractor(x, sampling_rate=self.rate, return_tensors="pt")
      with self.torch.inference_mode():
        emb = self.model(inputs.input_values).embeddings
      rows.append(emb[0].float().numpy())
    dim = int(self.model.config.xvector_output_dim)
    return scoring.l2_normalize(np.stack(rows) if rows
                                else np.zeros((0, dim), np.float32))
