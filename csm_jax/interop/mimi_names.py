"""Kyutai Mimi checkpoint names (the ``moshi`` package layout) -> our codec.

  encoder.model.0 / 1+3i / 3+3i / 14      first conv, residual unit and
                                          strided conv of stage i, last conv
  decoder.model.0 / 2+3i / 3+3i / 14      first conv, transposed conv and
                                          residual unit of stage i, last conv
  *.block.1 / *.block.3                   the unit's k=3 and k=1 convs
  {encoder,decoder}_transformer.transformer.layers.N.
      self_attn.in_projs.0 (fused q,k,v), self_attn.out_projs.0,
      norm1/norm2 (LayerNorm), linear1/linear2, layer_scale_1/2.scale
  downsample.conv.conv.conv, upsample.convtr.convtr.convtr (depthwise)
  quantizer.rvq_first / rvq_rest: input_proj, output_proj (1x1 convs) and
      vq.layers.L._codebook.{embedding_sum, cluster_usage}

Conv weights are (out, in, k) and transposed convs (in, out, k); ours are
(k, in, out). The transformer's q/k rows are permuted per head (interleaved
rotary pairs -> halves). A codebook is ``embedding_sum / max(cluster_usage,
1e-5)``. Biases Mimi does not have (its downsample, upsample and MLP) are
zeros here. Released checkpoints have weight norm folded into the weights;
a checkpoint that still holds ``weight_g``/``weight_v`` pairs is refused.
"""

from __future__ import annotations

import numpy as np

from csm_jax.interop.mapping import TensorMap, interleaved_to_halves
from csm_jax.interop.safetensors_io import Checkpoint, ConversionError

EXAMPLE_NAMES = ("encoder.model.0.conv.conv.weight",
                 "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum")
CODEBOOK_EPS = 1e-5
_HF_PREFIXES = ("encoder.layers.", "semantic_residual_vector_quantizer",
                "quantizer.semantic_residual_vector_quantizer.")


def _conv(tm, src, ours, c_in, c_out, k, out, bias=True):
  w = tm.take(f"{src}.weight", (c_out, c_in, k))
  out[f"{ours}.kernel"] = w.transpose(2, 1, 0)
  out[f"{ours}.bias"] = (tm.take(f"{src}.bias", (c_out,)) if bias
                         else np.zeros((c_out,), np.float32))


def _conv_transpose(tm, src, ours, c_in, c_out, k, out, groups=1, bias=True):
  w = tm.take(f"{src}.weight", (c_in, c_out // groups, k))
  out[f"{ours}.kernel"] = w.transpose(2, 1, 0) if groups > 1 else \
      w.transpose(2, 0, 1)
  out[f"{ours}.bias"] = (tm.take(f"{src}.bias", (c_out,)) if bias
                         else np.zeros((c_out,), np.float32))


def _residual(tm, src, ours, dim, c, out):
  hidden = dim // c.compress
  _conv(tm, f"{src}.block.1.conv.conv", f"{ours}.res.0.conv1", dim, hidden,
        c.residual_kernel_size, out)
  _conv(tm, f"{src}.block.3.conv.conv", f"{ours}.res.0.conv2", hidden, dim, 1,
        out)


def _seanet(tm, c, out):
  ch, ratios = tuple(c.channels), tuple(c.ratios)
  n = len(ratios)
  _conv(tm, "encoder.model.0.conv.conv", "encoder.conv_in", 1, ch[0],
        c.kernel_size, out)
  for i, r in enumerate(reversed(ratios)):
    _residual(tm, f"encoder.model.{1 + 3 * i}", f"encoder.stages.{i}", ch[i],
              c, out)
    _conv(tm, f"encoder.model.{3 + 3 * i}.conv.conv",
          f"encoder.stages.{i}.down", ch[i], ch[i + 1], 2 * r, out)
  _conv(tm, f"encoder.model.{2 + 3 * n}.conv.conv", "encoder.conv_out",
        ch[-1], c.latent_dim, c.last_kernel_size, out)
  _conv(tm, "decoder.model.0.conv.conv", "decoder.conv_in", c.latent_dim,
        ch[-1], c.kernel_size, out)
  for i, r in enumerate(ratios):
    _conv_transpose(tm, f"decoder.model.{2 + 3 * i}.convtr.convtr",
                    f"decoder.stages.{i}.up", ch[n - i], ch[n - i - 1], 2 * r,
                    out)
    _residual(tm, f"decoder.model.{3 + 3 * i}", f"decoder.stages.{i}",
              ch[n - i - 1], c, out)
  _conv(tm, f"decoder.model.{2 + 3 * n}.conv.conv", "decoder.conv_out", ch[0],
        1, c.last_kernel_size, out)


def _transformer(tm, src, ours, c, out):
  t = c.transformer
  d, h = t.width, t.heads
  hd, f = d // h, t.mlp_ratio * d
  for n in range(t.layers):
    p, q = f"{src}.transformer.layers.{n}", f"{ours}.layers.{n}"
    qkv = tm.take(f"{p}.self_attn.in_projs.0.weight", (3 * d, d))
    wq, wk, wv = np.split(qkv, 3)
    wq = interleaved_to_halves(wq, h, hd).reshape(d, d)
    wk = interleaved_to_halves(wk, h, hd).reshape(d, d)
    out[f"{q}.qkv.kernel"] = np.concatenate([wq, wk, wv]).T
    out[f"{q}.out.kernel"] = tm.take(f"{p}.self_attn.out_projs.0.weight",
                                     (d, d)).T
    for i in (1, 2):
      out[f"{q}.norm{i}.scale"] = tm.take(f"{p}.norm{i}.weight", (d,))
      out[f"{q}.norm{i}.bias"] = tm.take(f"{p}.norm{i}.bias", (d,))
      out[f"{q}.scale{i}"] = tm.take(f"{p}.layer_scale_{i}.scale", (d,))
    out[f"{q}.up.kernel"] = tm.take(f"{p}.linear1.weight", (f, d)).T
    out[f"{q}.up.bias"] = np.zeros((f,), np.float32)
    out[f"{q}.down.kernel"] = tm.take(f"{p}.linear2.weight", (d, f)).T
    out[f"{q}.down.bias"] = np.zeros((d,), np.float32)


def _rvq(tm, src, ours, levels, c, out):
  q, d = c.rvq, c.latent_dim
  k, cd = q.codebook_size, q.codebook_dim
  out[f"{ours}.in_proj.kernel"] = tm.take(f"{src}.input_proj.weight",
                                          (cd, d, 1))[:, :, 0].T
  out[f"{ours}.out_proj.kernel"] = tm.take(f"{src}.output_proj.weight",
                                           (d, cd, 1))[:, :, 0].T
  sums, usage = [], []
  for level in range(levels):
    p = f"{src}.vq.layers.{level}._codebook"
    sums.append(tm.take(f"{p}.embedding_sum", (k, cd)))
    usage.append(tm.take(f"{p}.cluster_usage", (k,)))
    tm.skip(f"{p}._initialized")
  es, cu = np.stack(sums), np.stack(usage)
  out[f"{ours}.codebook"] = es / np.maximum(cu, CODEBOOK_EPS)[..., None]
  out[f"{ours}.embed_sum"] = es
  out[f"{ours}.cluster_size"] = cu
  out[f"{ours}.initialized"] = np.ones((), np.bool_)


def mimi_params(ckpt: Checkpoint, c) -> dict:
  """Our codec's variables (dotted path -> array) from a Mimi checkpoint,
  for the codec config ``c`` (``codec_config("mimi")`` without a semantic
  head). Raises ConversionError naming every mismatch."""
  path, names = ckpt.path, ckpt.shapes
  if any(k.startswith(_HF_PREFIXES) for k in names):
    raise ConversionError(
        f"{path}: a Hugging Face transformers Mimi checkpoint (names like "
        "encoder.layers.0.conv.weight); convert the moshi-layout file "
        "(e.g. tokenizer-e351c8d8-checkpoint125.safetensors of "
        "kyutai/moshiko-pytorch-bf16) instead")
  norm = [k for k in names if k.endswith((".weight_g", ".weight_v"))]
  if norm:
    raise ConversionError(
        f"{path}: {norm[0]} is an unfolded weight-norm parameter; released "
        "Mimi checkpoints have weight norm folded (weight = g * v / |v|): "
        "fold it before converting")
  if not c.semantic.enabled:
    raise ConversionError("the codec config has no split quantizer "
                          "(codec.semantic.enabled); Mimi's is 1 + 31 levels")
  tm = TensorMap(ckpt, "Mimi", EXAMPLE_NAMES)
  out: dict[str, np.ndarray] = {}
  _seanet(tm, c, out)
  _transformer(tm, "encoder_transformer", "enc_transformer", c, out)
  _transformer(tm, "decoder_transformer", "dec_transformer", c, out)
  d, ds = c.latent_dim, c.downsample
  _conv(tm, "downsample.conv.conv.conv", "downsample", d, d, 2 * ds, out,
        bias=False)
  _conv_transpose(tm, "upsample.convtr.convtr.convtr", "upsample", d, d,
                  2 * ds, out, groups=d if c.upsample_depthwise else 1,
                  bias=False)
  _rvq(tm, "quantizer.rvq_first", "quantizer.semantic", 1, c, out)
  _rvq(tm, "quantizer.rvq_rest", "quantizer.acoustic", c.rvq.levels - 1, c,
       out)
  tm.finish()
  return out
