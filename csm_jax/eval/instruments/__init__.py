"""Measuring instruments trained on the corpus itself: a CTC recognizer
(CER/WER, CTC log-probabilities for forced alignment), a speaker encoder
(embeddings, EER), an emotion classifier and prosody tracks.

Off-the-shelf recognizers transcribe eSpeak speech poorly and no model hub
is reachable, so each instrument is a task of the shared trainer, trained
once per corpus on its train split and cached by the corpus's fingerprint;
``validity`` reports each one's accuracy on the validation split.

  inst = ensure_instruments(config)   # first use trains (~20 min on 2 cores)
  inst.transcribe([audio], 24000)
  inst.validity["recognizer"]["cer"]

``select_instruments(config, recognizer=DIR, speaker_model="resemblyzer")``
plugs in other instruments (``plugged``): a Whisper or CTC model directory,
Resemblyzer's shipped encoder or an x-vector model directory, each measured
on the same held-out ground truth.
"""

from csm_jax.eval.instruments.cache import (InstrumentsError, cache_dir,
                                            ensure_instruments,
                                            load_instruments)
from csm_jax.eval.instruments.ctc import ALPHABET, BLANK, greedy_decode
from csm_jax.eval.instruments.instruments import Instruments
from csm_jax.eval.instruments.model_dirs import ModelDirError
from csm_jax.eval.instruments.plugged import (PluggedInstruments,
                                              select_instruments)
from csm_jax.eval.instruments.scoring import cosine_similarity, eer
from csm_jax.eval.instruments.validity import markdown as validity_markdown

__all__ = ["ALPHABET", "BLANK", "Instruments", "InstrumentsError",
           "ModelDirError", "PluggedInstruments", "cache_dir",
           "cosine_similarity", "eer", "ensure_instruments", "greedy_decode",
           "load_instruments", "select_instruments", "validity_markdown"]
