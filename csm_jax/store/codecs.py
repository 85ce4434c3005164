"""Finding a codec wherever a run keeps one.

``load_any(path)`` opens a saved codec directory (``config.json`` +
``weights.npz``), a CSM workdir or export (its ``codec/export`` or
``codec/``), or a codec training workdir, whose latest checkpoint is
restored with ``restore_params`` (generator weights and codebooks only).
"""

from __future__ import annotations

import os

from csm_jax.codec.io import CodecNotFoundError, is_codec_dir, load_codec
from csm_jax.store import layout
from csm_jax.store.restore import RestoreError, restore_params
from csm_jax.store.run_config import load_run_config


def load_any(path: str):
  """(Codec, codec config) from any of the places listed above."""
  if not os.path.isdir(path):
    raise CodecNotFoundError(f"{path}: no such codec directory")
  for d in (path, layout.own_codec_export(path),
            os.path.join(path, layout.EXPORT_CODEC)):
    if is_codec_dir(d):
      return load_codec(d)
  if layout.is_workdir(path):
    return _load_codec_run(path)
  raise CodecNotFoundError(
      f"{path}: holds no codec (expected config.json + weights.npz, a codec "
      "training workdir with run_config.json + checkpoints/, or a CSM "
      "workdir or export with its codec)")


def _load_codec_run(workdir: str):
  config = load_run_config(workdir)
  if config.get("task") != "codec":
    raise CodecNotFoundError(
        f"{workdir}: a {config.get('task')!r} run without a codec; pass a "
        "codec training workdir or a saved codec directory")
  try:
    r = restore_params(workdir)
  except RestoreError as e:
    # Callers handle one error type for "no usable codec here".
    raise CodecNotFoundError(str(e)) from e
  return r.model().codec, config.codec
