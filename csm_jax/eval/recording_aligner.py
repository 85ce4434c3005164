"""The corpus recognizer as the aligner of long recordings.

``csm_jax.data.corpora.recordings`` aligns transcripts with any object
that has the ``ctc_align.Aligner`` shape; the data layer cannot import
the evaluation layer, so the project's own CTC recognizer is wrapped here
and handed down by the entrypoint (``python -m csm_jax.prepare
--dataset=recordings``).

``RecognizerAligner(directory)`` takes an instruments cache (the
directory holding ``instruments.json``: the recognizer and the speaker
encoder, whose embeddings then also cluster untagged speakers) or a
single recognizer's training workdir. The network is loaded on first use
and dropped when pickled, so Beam workers load their own copy.
``default_aligner`` trains (once) and opens the instruments of the
embedded corpus; ``from_spec("pkg.module:factory")`` calls a factory of
your own for any other CTC model.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from typing import Sequence

import numpy as np
from flax import nnx

from csm_jax.config.errors import UserError
from csm_jax.eval import text_metrics
from csm_jax.eval.instruments import ctc
from csm_jax.eval.instruments import frontend
from csm_jax.eval.instruments import tasks
from csm_jax.eval.instruments.instruments import Network
from csm_jax.store.restore import RestoreError, restore_params
from csm_jax.store.run_config import RunConfigError, load_run_config

_MANIFEST = "instruments.json"


class AlignerError(UserError, ValueError):
  """The aligner asked for cannot be loaded; names the directory or spec."""


def _load_network(workdir: str, kind: str) -> Network:
  try:
    config = load_run_config(workdir)
    if "instrument" not in config or config.instrument.kind != kind:
      raise AlignerError(f"{workdir}: not a {kind} training run")
    ic = config.instrument
    restored = restore_params(
        workdir, dtype="float32", groups={"model": nnx.Param},
        model_fn=lambda rngs: tasks.build_model(ic, rngs))
  except (RestoreError, RunConfigError) as e:
    raise AlignerError(f"{workdir}: the {kind} cannot be loaded ({e})") from e
  graphdef, state = nnx.split(restored.model())
  return Network(graphdef, state, ic)


class RecognizerAligner:
  """The corpus recognizer behind the ``ctc_align.Aligner`` interface."""

  alphabet = ctc.ALPHABET
  blank = ctc.BLANK
  sample_rate = frontend.SAMPLE_RATE

  def __init__(self, directory: str):
    self.directory = os.path.abspath(directory)
    self.is_cache = os.path.exists(os.path.join(self.directory, _MANIFEST))
    rec_dir = (os.path.join(self.directory, "recognizer") if self.is_cache
               else self.directory)
    self._rec_dir = rec_dir
    self._nets: dict[str, Network] = {}
    net = self._net("recognizer")
    ic = net.config.net
    self.seconds_per_frame = float(ic.stack / ic.upsample
                                   / frontend.FRAME_RATE)
    self.fingerprint = self._fingerprint()

  def _fingerprint(self) -> str:
    # Sizes and times of every file: a retrained network (or speaker
    # encoder) makes the recordings align again.
    h = hashlib.sha256(self.directory.encode())
    for root, _, files in sorted(os.walk(self.directory)):
      for n in sorted(files):
        st = os.stat(os.path.join(root, n))
        h.update(f"{n}{st.st_size}{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]

  def _net(self, kind: str) -> Network:
    if kind not in self._nets:
      path = (self._rec_dir if kind == "recognizer" else
              os.path.join(self.directory, "speaker_encoder"))
      self._nets[kind] = _load_network(path, kind)
    return self._nets[kind]

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_nets"] = {}
    return state

  def normalize(self, text: str) -> str:
    return text_metrics.normalize(text)

  def log_probs(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    feats = [frontend.log_mel(np.asarray(a, np.float32)) for a in audios]
    out: list[np.ndarray | None] = [None] * len(feats)
    for i, (log_probs, mask) in self._net("recognizer").apply("log_probs",
                                                              feats):
      out[i] = np.asarray(log_probs[:int(mask.sum())])
    return out

  @property
  def speaker_embeddings(self):
    """The speaker encoder's embeddings of clips, or None: only an
    instruments cache has one (the data layer then clusters model-free
    voice vectors)."""
    return self._speaker_embeddings if self.is_cache else None

  def _speaker_embeddings(self, audios: Sequence[np.ndarray]) -> np.ndarray:
    feats = [frontend.log_mel(np.asarray(a, np.float32)) for a in audios]
    net = self._net("speaker_encoder")
    out = np.zeros((len(feats), int(net.config.net.embed_dim)), np.float32)
    for i, (emb, _, _) in net.apply("utterance", feats):
      out[i] = emb
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def default_aligner(progress=None) -> RecognizerAligner:
  """The instruments of the embedded default corpus (trained on first use:
  the corpus is built and the instruments trained, several minutes)."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.config import make_config
  from csm_jax.eval.instruments import ensure_instruments
  inst = ensure_instruments(make_config("debug"), progress=progress)
  return RecognizerAligner(inst.directory)


def from_spec(spec: str):
  """The aligner ``factory()`` returns, for ``spec`` "pkg.module:factory"."""
  module, _, attr = spec.partition(":")
  if not module or not attr:
    raise AlignerError(f"--aligner={spec}: expected 'package.module:factory'")
  try:
    factory = getattr(importlib.import_module(module), attr)
  except (ImportError, AttributeError) as e:
    raise AlignerError(f"--aligner={spec}: cannot import it ({e})") from e
  aligner = factory()
  missing = [a for a in ("alphabet", "blank", "sample_rate",
                         "seconds_per_frame", "normalize", "log_probs")
             if not hasattr(aligner, a)]
  if missing:
    raise AlignerError(f"--aligner={spec}: the object it returns lacks "
                       f"{', '.join(missing)} (see csm_jax.data.corpora."
                       "ctc_align.Aligner)")
  return aligner
