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
from csm_jax.data.tokenizer import TextTokenizer
from csm_jax.inference.generator import Generator
from csm_jax.store import layout
from csm_jax.store.restore import restore_params


class LoadError(RuntimeError):
  """A checkpoint lacks what generation needs; names the missing file."""


def _weight_dtype(dtype: str) -> str | None:
  """What to cast weights to while reading them (None: as stored)."""
  if dtype != "auto":
    return dtype
  # XLA:CPU widens bf16 weights on every call; widening once at load is
  # faster (see inference.decode.compute_dtype_for_platform).
  return "float32" if jax.default_backend() == "cpu" else None


def load_generator(checkpoint: str, dtype: str = "auto") -> Generator:
  """A Generator for an export or a training workdir.

  ``dtype``: "auto" (f32 weights on CPU, the stored dtype elsewhere),
  "float32" or "bfloat16".
  """
  directory = layout.absolute(checkpoint)
  if not (layout.is_export(directory) or layout.is_workdir(directory)):
    raise LoadError(f"{checkpoint} is neither an export nor a training "
                    "workdir")
  r = restore_params(directory, dtype=_weight_dtype(dtype))
  if r.config.task != "csm":
    raise LoadError(f"{checkpoint} holds a {r.config.task!r} run, not a CSM")
  tok_path = os.path.join(directory, layout.TOKENIZER)
  if not os.path.exists(tok_path):
    raise LoadError(f"{tok_path} is missing: the model was not trained on "
                    "a tokenized corpus, so it cannot read text")
  codec_dir = (os.path.join(directory, layout.EXPORT_CODEC) if r.kind ==
               "export" else layout.run_codec_dir(r.config, directory))
  if not codec_dir or not os.path.isdir(codec_dir):
    raise LoadError(f"{codec_dir or directory + '/codec'} is missing: no "
                    "codec to turn codes into audio")
  return Generator(r.config, r.graphdef, r.params["model"],
                   TextTokenizer.load(tok_path), CodecHandle.load(codec_dir),
                   weight_dtype=None)
