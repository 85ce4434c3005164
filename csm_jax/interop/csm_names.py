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
Names are our parameters' dotted paths (``backbone.layers.attn.wq``).
Checkpoints in Hugging Face transformers' CSM layout are recognised and
refused with a message (their names and rotary layout differ).
"""

from __future__ import annotations

import numpy as np

from csm_jax.interop.mapping import TensorMap, interleaved_to_halves
from csm_jax.interop.safetensors_io import ConversionError

EXAMPLE_NAMES = ("backbone.layers.0.attn.q_proj.weight",
                 "codebook0_head.weight", "audio_head")
_HF_PREFIXES = ("backbone_model.", "depth_decoder.", "embed_text_tokens.")


def _head_dim(t) -> int:
  return t.head_dim or t.width // t.heads


def _transformer(tm: TensorMap, prefix: str, ours: str, t, out: dict) -> None:
  """One torchtune decoder (``prefix``) into our stacked ``ours`` stack."""
  w, hd, h, kv, f = t.width, _head_dim(t), t.heads, t.kv_heads, t.mlp
  per_layer: dict[str, list[np.ndarray]] = {}

  def add(key, value):
    per_layer.setdefault(key, []).append(value)

  for n in range(t.depth):
    p = f"{prefix}.layers.{n}"
    q = tm.take(f"{p}.attn.q_proj.weight", (h * hd, w))
    k = tm.take(f"{p}.attn.k_proj.weight", (kv * hd, w))
    v = tm.take(f"{p}.attn.v_proj.weight", (kv * hd, w))
    o = tm.take(f"{p}.attn.output_proj.weight", (w, h * hd))
    add("attn.wq", interleaved_to_halves(q, h, hd).transpose(2, 0, 1))
    add("attn.wk", interleaved_to_halves(k, kv, hd).transpose(2, 0, 1))
    add("attn.wv", v.reshape(kv, hd, w).transpose(2, 0, 1))
    add("attn.wo", o.T.reshape(h, hd, w))
    add("mlp.gate.kernel", tm.take(f"{p}.mlp.w1.weight", (f, w)).T)
    add("mlp.up.kernel", tm.take(f"{p}.mlp.w3.weight", (f, w)).T)
    add("mlp.down.kernel", tm.take(f"{p}.mlp.w2.weight", (w, f)).T)
    add("attn_norm.scale", tm.take(f"{p}.sa_norm.scale", (w,)))
    add("mlp_norm.scale", tm.take(f"{p}.mlp_norm.scale", (w,)))
  for key, values in per_layer.items():
    out[f"{ours}.layers.{key}"] = np.stack(values)
  out[f"{ours}.norm.scale"] = tm.take(f"{prefix}.norm.scale", (w,))


def csm_params(path: str, tensors: dict[str, np.ndarray], m) -> dict:
  """Our CSM parameters (dotted path -> float32 array) from a reference
  checkpoint's ``tensors``, for ``config.model`` ``m``.

  Raises ConversionError naming every missing, misshapen or unexpected
  tensor (or saying the file holds another model).
  """
  if any(k.startswith(_HF_PREFIXES) for k in tensors):
    raise ConversionError(
        f"{path}: a Hugging Face transformers CSM checkpoint (names like "
        "backbone_model.layers.0.self_attn.q_proj.weight); convert the "
        "original checkpoint (torchtune names, e.g. model.safetensors or "
        "ckpt.pt of sesame/csm-1b) instead")
  tm = TensorMap(path, tensors, "CSM", EXAMPLE_NAMES)
  # Torch attaches no cache or mask buffers to a state dict unless caches
  # were set up; those that exist are not weights.
  for name in tensors:
    if name.endswith(("kv_cache.k_cache", "kv_cache.v_cache",
                      "kv_cache.cache_pos", "causal_mask")):
      tm.skip(name)
  wb, wd = m.backbone.width, m.decoder.width
  n, vocab = m.n_codebooks, m.audio_vocab
  out = {
      "text_embed.table": tm.take("text_embeddings.weight", (m.text_vocab, wb)),
      "audio_embed.table": tm.take("audio_embeddings.weight",
                                   (n * vocab, wb)),
      "codebook0_head.kernel": tm.take("codebook0_head.weight",
                                       (vocab, wb)).T,
      "projection.kernel": tm.take("projection.weight", (wd, wb)).T,
      "audio_head": tm.take("audio_head", (n - 1, wd, vocab)),
  }
  _transformer(tm, "backbone", "backbone", m.backbone, out)
  _transformer(tm, "decoder", "decoder", m.decoder, out)
  tm.finish()
  return out
