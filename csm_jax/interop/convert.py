"""Converting Sesame CSM-1B and Kyutai Mimi PyTorch weights into our formats.

``convert_csm`` writes an export (``store.export``: Orbax params, config,
``export.json``) with the Llama-3 ``tokenizer.json`` and the converted Mimi
as its ``codec/``; ``convert_mimi`` writes a codec directory
(``codec.io``). Nothing is written before every name and shape is
checked (CSM's from the checkpoint's header, before any weight is read): a
checkpoint with an unexpected, missing or misshapen tensor, a tokenizer of
another vocabulary or a corrupt file raises ``ConversionError`` naming the
file and tensor. CSM's weights are then converted while the export is
written (``streaming.deferred``): each parameter is made in the export's
dtype from its source tensors, one tensor at a time, written to the Orbax
checkpoint and dropped before the next, so about the largest parameter
plus the largest tensor is in memory, not the export.
"""

from __future__ import annotations

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.codec.io import save_codec
from csm_jax.codec.model import Codec
from csm_jax.config import codec as codec_cfg
from csm_jax.config.schema import make_config, validate
from csm_jax.data.llama_tokenizer import LlamaTokenizer
from csm_jax.data.tokenizer import TokenizerError
from csm_jax.interop import streaming
from csm_jax.interop.csm_names import csm_recipes
from csm_jax.interop.mimi_names import mimi_params
from csm_jax.interop.safetensors_io import ConversionError, open_checkpoint
from csm_jax.store import layout, models
from csm_jax.store.export import write_export
from csm_jax.store.restore import Restored
from csm_jax.store.run_config import update_export_info


def fill(abstract_state, values: dict[str, np.ndarray], what: str):
  """``abstract_state`` with every leaf taken from ``values`` by dotted
  path, cast to the leaf's dtype. A leaf without a value (or a value
  without a leaf) is a mapping defect, reported by name."""
  used = set()

  def one(path, leaf):
    name = models.dotted(path)
    if name not in values:
      raise ConversionError(f"{what}: no converted value for our {name} "
                            f"{tuple(leaf.shape)}")
    v = values[name]
    if tuple(v.shape) != tuple(leaf.shape):
      raise ConversionError(f"{what}: converted {name} has shape "
                            f"{tuple(v.shape)}, our model has "
                            f"{tuple(leaf.shape)}")
    used.add(name)
    return jnp.asarray(v, leaf.dtype)

  state = jax.tree_util.tree_map_with_path(one, abstract_state)
  extra = sorted(set(values) - used)
  if extra:
    raise ConversionError(f"{what}: converted values {extra[:5]} have no "
                          "place in our model")
  return state


# -- configs ------------------------------------------------------------------
def mimi_config():
  """Our codec config of Kyutai's Mimi: the ``mimi`` row, no semantic head
  (the released codec carries no distillation head)."""
  c = codec_cfg.codec_config("mimi")
  c.semantic.weight = 0.0
  c.semantic.target_dim = 0
  return c


def csm_config():
  """Our config of Sesame's CSM-1B (``configs/csm_1b.py``'s size row,
  fully causal, with Mimi as its codec)."""
  c = make_config("csm_1b")
  c.codec = mimi_config()
  return c


def _check_csm_config(config) -> None:
  m = config.model
  for field, value in (("model.text_loss_weight", m.text_loss_weight),
                       ("model.cond_dim", m.cond_dim),
                       ("model.n_prefix", m.n_prefix),
                       ("train.lora.rank", config.train.lora.rank)):
    if value:
      raise ConversionError(f"config.{field} is {value}: Sesame's CSM has no "
                            "such parameters; convert with it at 0")
  if m.text_window < m.max_seq_len:
    raise ConversionError(
        f"config.model.text_window is {m.text_window}: Sesame's CSM is fully "
        f"causal; set it to model.max_seq_len ({m.max_seq_len}) or the "
        "converted model computes something else")
  validate(config)


# -- Mimi ---------------------------------------------------------------------
def mimi_codec(weights: str, c=None) -> tuple[Codec, object]:
  """A Mimi checkpoint as our Codec (in memory) and its config."""
  c = c or mimi_config()
  with open_checkpoint(weights) as ckpt:
    values = mimi_params(ckpt, c)
  graphdef, state = nnx.split(nnx.eval_shape(lambda: Codec(c, rngs=nnx.Rngs(0))))
  state = fill(state, values, weights)
  return nnx.merge(graphdef, state), c


def _refuse_existing(out: str, name: str) -> None:
  if os.path.exists(os.path.join(out, name)):
    raise ConversionError(f"{os.path.join(out, name)} exists; choose a new "
                          "--out")


def convert_mimi(weights: str, out: str) -> dict:
  """Writes a codec directory (config.json + weights.npz) of a Mimi
  checkpoint into ``out``."""
  out = layout.absolute(out)
  _refuse_existing(out, "weights.npz")
  codec, c = mimi_codec(weights)
  save_codec(out, codec, c)
  return {"source": os.path.abspath(weights), "out": out,
          "levels": c.rvq.levels, "codebook_size": c.rvq.codebook_size}


# -- CSM ----------------------------------------------------------------------
def check_tokenizer(path: str, text_vocab: int) -> LlamaTokenizer:
  """The Llama-3 tokenizer at ``path``, checked against the model's text
  embedding rows."""
  try:
    tok = LlamaTokenizer.load(path)
  except (FileNotFoundError, TokenizerError) as e:
    raise ConversionError(str(e)) from e
  if tok.vocab_size != text_vocab:
    raise ConversionError(
        f"{path}: a tokenizer of {tok.vocab_size} ids, but the model's text "
        f"embedding (text_embeddings.weight) has {text_vocab} rows: not the "
        "CSM-1B (Llama-3) tokenizer")
  return tok


def _csm(ckpt, weights: str, config, dtype: str, convert) -> Restored:
  """The open CSM checkpoint ``weights`` as our parameters, by ``convert``
  (``streaming.fill`` or ``streaming.deferred``) of its recipes."""
  groups = models.param_groups("csm")
  graphdef, params, extra = models.abstract(
      lambda rngs: models.build_model(config, rngs), groups)
  recipes = csm_recipes(ckpt, config.model)
  params = {"model": convert(params["model"], recipes, ckpt, dtype,
                             weights)}
  return Restored(config=config, graphdef=graphdef, params=params,
                  extra=extra, groups=groups, step=None, directory="",
                  kind="export")


def csm_restored(weights: str, config, dtype: str = "float32") -> Restored:
  """A CSM checkpoint as our parameters (arrays of ``dtype``, in memory),
  ready to export; read one tensor at a time."""
  with open_checkpoint(weights) as ckpt:
    return _csm(ckpt, weights, config, dtype, streaming.fill)


def _remove_unfinished(out: str, created: bool) -> None:
  """Removes what a failed export left in ``out``: all of it if this
  conversion created it, else its (temporary) params directories."""
  if created:
    shutil.rmtree(out, ignore_errors=True)
    return
  for name in os.listdir(out) if os.path.isdir(out) else ():
    if name.startswith(layout.EXPORT_PARAMS):
      shutil.rmtree(os.path.join(out, name), ignore_errors=True)


def convert_csm(weights: str, out: str, config=None, tokenizer: str | None =
                None, mimi: str | None = None,
                dtype: str = "bfloat16") -> dict:
  """Writes an export of a CSM checkpoint into ``out``.

  ``config`` defaults to ``csm_config()``; ``tokenizer`` is a Llama-3
  ``tokenizer.json`` and ``mimi`` a Mimi checkpoint (both optional, both
  needed to generate). ``dtype`` is the stored parameter dtype.
  """
  config = config if config is not None else csm_config()
  out = layout.absolute(out)
  _refuse_existing(out, layout.EXPORT_PARAMS)
  if mimi:
    codec, codec_c = mimi_codec(mimi)
    config.codec = codec_c
  _check_csm_config(config)
  if tokenizer:
    check_tokenizer(tokenizer, config.model.text_vocab)
  created = not os.path.exists(out)
  with open_checkpoint(weights) as ckpt:
    # Every name and shape is checked here; each parameter is converted
    # only when the save below writes it, so the export is never whole in
    # memory.
    r = _csm(ckpt, weights, config, dtype, streaming.deferred)
    try:
      write_export(r, out, dtype, source=os.path.abspath(weights))
    except BaseException:
      # A tensor that cannot be read part-way leaves no half export.
      _remove_unfinished(out, created)
      raise
  files = []
  if tokenizer:
    shutil.copy(tokenizer, os.path.join(out, layout.TOKENIZER_JSON))
    files.append(layout.TOKENIZER_JSON)
  if mimi:
    save_codec(os.path.join(out, layout.EXPORT_CODEC), codec, codec_c)
    files.append(layout.EXPORT_CODEC)
  return update_export_info(out, files=files, converted_from="sesame-csm")
