"""Sesame CSM checkpoint names (torchtune layout) -> our CSM parameters.

The reference model is two torchtune ``llama3_2`` decoders with their token
embeddings and output layers removed, plus CSM's own embeddings and heads:

  backbone.layers.N.attn.{q,k,v,output}_proj.weight   (out, in) Linear
  backbone.layers.N.mlp.{w1,w2,w3}.weight             gate, down, up
  backbone.layers.N.{sa_norm,mlp_norm}.scale, backbone.norm.scale
  decoder.* (the same), text_embeddings.weight, audio_embeddings.weight,
  projection.weight, codebook0_head.weight, audio_head (N-1, Wd, vocab)

Linear weights are transposed to (in, out); q/k rows are permuted per head
because torchtune's rotary embedding rotates interleaved pairs and ours
rotates halves; layers are stacked on a leading axis (our scan layout).
Each of our parameters (named by its dotted path, ``backbone.layers.attn.wq``)
is a ``streaming.Recipe``: its sources and how one is laid out, so the
checkpoint is checked from its header and converted a tensor at a time.
Checkpoints in Hugging Face transformers' CSM layout are recognised and
refused with a message (their names and rotary layout differ).
"""

from __future__ import annotations

import functools

import numpy as np

from csm_jax.interop.mapping import TensorMap, interleaved_to_halves
from csm_jax.interop.safetensors_io import Checkpoint, ConversionError
from csm_jax.interop.streaming import Recipe, check, unchanged

EXAMPLE_NAMES = ("backbone.layers.0.attn.q_proj.weight",
                 "codebook0_head.weight", "audio_head")
_HF_PREFIXES = ("backbone_model.", "depth_decoder.", "embed_text_tokens.")
# Buffers torch attaches to a state dict once caches were set up: not weights.
_BUFFERS = ("kv_cache.k_cache", "kv_cache.v_cache", "kv_cache.cache_pos",
            "causal_mask")


def _head_dim(t) -> int:
  return t.head_dim or t.width // t.heads


def _transposed(t: np.ndarray) -> np.ndarray:
  return t.T


def _qk(t: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
  return interleaved_to_halves(t, heads, head_dim).transpose(2, 0, 1)


def _v(t: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
  return t.reshape(heads, head_dim, -1).transpose(2, 0, 1)


def _o(t: np.ndarray, heads: int, head_dim: int) -> np.ndarray:
  return t.T.reshape(heads, head_dim, -1)


def _transformer(prefix: str, ours: str, t) -> list[Recipe]:
  """One torchtune decoder (``prefix``) into our stacked ``ours`` stack."""
  w, hd, h, kv, f = t.width, _head_dim(t), t.heads, t.kv_heads, t.mlp
  part = functools.partial

  def layers(suffix, key, shape, fn):
    return Recipe(f"{ours}.layers.{key}",
                  tuple(f"{prefix}.layers.{n}.{suffix}" for n in
                        range(t.depth)), shape, fn, stacked=True)

  return [
      layers("attn.q_proj.weight", "attn.wq", (h * hd, w),
             part(_qk, heads=h, head_dim=hd)),
      layers("attn.k_proj.weight", "attn.wk", (kv * hd, w),
             part(_qk, heads=kv, head_dim=hd)),
      layers("attn.v_proj.weight", "attn.wv", (kv * hd, w),
             part(_v, heads=kv, head_dim=hd)),
      layers("attn.output_proj.weight", "attn.wo", (w, h * hd),
             part(_o, heads=h, head_dim=hd)),
      layers("mlp.w1.weight", "mlp.gate.kernel", (f, w), _transposed),
      layers("mlp.w3.weight", "mlp.up.kernel", (f, w), _transposed),
      layers("mlp.w2.weight", "mlp.down.kernel", (w, f), _transposed),
      layers("sa_norm.scale", "attn_norm.scale", (w,), unchanged),
      layers("mlp_norm.scale", "mlp_norm.scale", (w,), unchanged),
      Recipe(f"{ours}.norm.scale", (f"{prefix}.norm.scale",), (w,)),
  ]


def csm_recipes(ckpt: Checkpoint, m) -> list[Recipe]:
  """How each of our CSM parameters is made from a reference checkpoint,
  for ``config.model`` ``m``, checked against the checkpoint's header.

  Raises ConversionError naming every missing, misshapen or unexpected
  tensor (or saying the file holds another model) before any data is read.
  """
  if any(k.startswith(_HF_PREFIXES) for k in ckpt.shapes):
    raise ConversionError(
        f"{ckpt.path}: a Hugging Face transformers CSM checkpoint (names like "
        "backbone_model.layers.0.self_attn.q_proj.weight); convert the "
        "original checkpoint (torchtune names, e.g. model.safetensors or "
        "ckpt.pt of sesame/csm-1b) instead")
  tm = TensorMap(ckpt, "CSM", EXAMPLE_NAMES)
  for name in ckpt.shapes:
    if name.endswith(_BUFFERS):
      tm.skip(name)
  wb, wd = m.backbone.width, m.decoder.width
  n, vocab = m.n_codebooks, m.audio_vocab
  recipes = [
      Recipe("text_embed.table", ("text_embeddings.weight",),
             (m.text_vocab, wb)),
      Recipe("audio_embed.table", ("audio_embeddings.weight",),
             (n * vocab, wb)),
      Recipe("codebook0_head.kernel", ("codebook0_head.weight",),
             (vocab, wb), _transposed),
      Recipe("projection.kernel", ("projection.weight",), (wd, wb),
             _transposed),
      Recipe("audio_head", ("audio_head",), (n - 1, wd, vocab)),
      *_transformer("backbone", "backbone", m.backbone),
      *_transformer("decoder", "decoder", m.decoder),
  ]
  check(tm, recipes)
  return recipes
