"""A ready ``Generator`` from a training workdir or an export directory.

The weights come from ``csm_jax.store.restore_params`` (parameters only,
cast once on read to the precision decoding runs in), the tokenizer and the
codec from where the run or export keeps them. Nothing of the trainer or
the optimizer is built, and nothing is written.
"""

from __future__ import annotations

import os

import jax

from csm_jax.codec.handle import CodecHandle
from csm_jax.config import prosody as prosody_config
from csm_jax.config.errors import UserError
from csm_jax.data import prosody_cache
from csm_jax.data.prosody_tokens import ProsodyBins, ProsodyStats
from csm_jax.data.tokenizer_loader import load_tokenizer
from csm_jax.inference.generator import Generator
from csm_jax.store import layout
from csm_jax.store.adapters import merge_lora
from csm_jax.store.restore import restore_params


class LoadError(UserError, RuntimeError):
  """A checkpoint lacks what generation needs; names the missing file."""


def _weight_dtype(dtype: str) -> str | None:
  """What to cast weights to while reading them (None: as stored)."""
  if dtype != "auto":
    return dtype
  # XLA:CPU widens bf16 weights on every call; widening once at load is
  # faster (see inference.decode.compute_dtype_for_platform).
  return "float32" if jax.default_backend() == "cpu" else None


def load_generator(checkpoint: str, dtype: str = "auto",
                   step: int | None = None) -> Generator:
  """A Generator for an export or a training workdir.

  ``dtype``: "auto" (f32 weights on CPU, the stored dtype elsewhere),
  "float32" or "bfloat16". ``step``: a workdir's checkpoint (default: the
  latest), e.g. to trace a learning curve.
  """
  if not checkpoint:
    raise LoadError("no checkpoint given: pass a training workdir or an "
                    "export")
  directory = layout.absolute(checkpoint)
  if not (layout.is_export(directory) or layout.is_workdir(directory)):
    raise LoadError(f"{checkpoint} is neither an export nor a training "
                    "workdir")
  r = restore_params(directory, dtype=_weight_dtype(dtype), step=step)
  # A LoRA run or an export that kept its adapters: decode the merged model.
  r = merge_lora(r)
  if r.config.task != "csm":
    raise LoadError(f"{checkpoint} holds a {r.config.task!r} run, not a CSM")
  tok_path = layout.tokenizer_path(directory)
  if tok_path is None:
    raise LoadError(f"{os.path.join(directory, layout.TOKENIZER)} (or "
                    f"{layout.TOKENIZER_JSON}) is missing: the model was not "
                    "trained on a tokenized corpus, so it cannot read text")
  codec_dir = (os.path.join(directory, layout.EXPORT_CODEC) if r.kind ==
               "export" else layout.run_codec_dir(r.config, directory))
  if not codec_dir or not os.path.isdir(codec_dir):
    raise LoadError(f"{codec_dir or directory + '/codec'} is missing: no "
                    "codec to turn codes into audio")
  codec = CodecHandle.load(codec_dir)
  return Generator(r.config, r.graphdef, r.params["model"],
                   load_tokenizer(tok_path), codec,
                   weight_dtype=None,
                   prosody_bins=_prosody_bins(r.config, directory, codec_dir))


def _prosody_bins(config, directory: str, codec_dir: str):
  """The prosody stream's binning (None when the stream is off).

  Its stats come from the export (``prosody_stats.json``) or from the
  training corpus's cache, where the run computed them.
  """
  if not prosody_config.enabled(config.model):
    return None
  path = os.path.join(directory, prosody_cache.EXPORT_STATS)
  if not os.path.exists(path):
    path = prosody_cache.stats_path(config, codec_dir)
  if not os.path.exists(path):
    raise LoadError(
        f"{path} is missing: the prosody stream needs the speaker F0 "
        f"statistics of the corpus it was trained on (written when it "
        f"trained; an export keeps them as {prosody_cache.EXPORT_STATS})")
  return ProsodyBins(config.model.prosody, ProsodyStats.load(path))
