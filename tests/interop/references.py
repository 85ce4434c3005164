"""Random-weight PyTorch references built from the references' own blocks.

``csm_reference`` is Sesame's CSM as its model code assembles it: two
torchtune ``llama3_2`` decoders with their token embeddings and output
layers replaced by identities, CSM's text/audio embeddings, ``projection``,
``codebook0_head`` and ``audio_head``; small widths and 2 layers, but 32
codebooks of 2051 ids and the Llama-3 text vocabulary. ``mimi_reference``
is moshi's ``get_mimi(None)`` (Mimi's real shape) with random codebooks.
Both compute what the references compute, in float32, for the tests to
compare against. Needs the ``interop`` test extra (torch, torchtune, moshi).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Small CSM: (width, depth, heads, kv_heads, mlp) of backbone and decoder.
BACKBONE = (64, 2, 4, 2, 128)
DECODER = (32, 2, 2, 1, 64)
TEXT_VOCAB, CODEBOOKS, AUDIO_VOCAB = 128_256, 32, 2051
MAX_SEQ = 256


def _llama(shape):
  from torchtune.models import llama3_2  # pylint: disable=g-import-not-at-top
  width, depth, heads, kv, mlp = shape
  model = llama3_2.llama3_2(
      vocab_size=TEXT_VOCAB, num_layers=depth, num_heads=heads,
      num_kv_heads=kv, embed_dim=width, max_seq_len=MAX_SEQ,
      intermediate_dim=mlp, attn_dropout=0.0, norm_eps=1e-5,
      rope_base=500_000, scale_factor=32)
  model.tok_embeddings = nn.Identity()
  model.output = nn.Identity()
  return model


class CSMReference(nn.Module):
  """Sesame CSM's modules and naming, teacher-forced in one pass."""

  def __init__(self):
    super().__init__()
    self.backbone = _llama(BACKBONE)
    self.decoder = _llama(DECODER)
    wb, wd = BACKBONE[0], DECODER[0]
    self.text_embeddings = nn.Embedding(TEXT_VOCAB, wb)
    self.audio_embeddings = nn.Embedding(AUDIO_VOCAB * CODEBOOKS, wb)
    self.projection = nn.Linear(wb, wd, bias=False)
    self.codebook0_head = nn.Linear(wb, AUDIO_VOCAB, bias=False)
    self.audio_head = nn.Parameter(
        torch.randn(CODEBOOKS - 1, wd, AUDIO_VOCAB) / wd ** 0.5)

  def embed(self, tokens):
    """CSM's _embed_tokens: (B, T, 33) -> (B, T, 33, W)."""
    text = self.text_embeddings(tokens[:, :, -1]).unsqueeze(-2)
    offsets = AUDIO_VOCAB * torch.arange(CODEBOOKS)
    audio = self.audio_embeddings((tokens[:, :, :-1] + offsets).reshape(-1))
    audio = audio.reshape(*tokens.shape[:2], CODEBOOKS, -1)
    return torch.cat([audio, text], dim=-2)

  @torch.no_grad()
  def backbone_hidden(self, tokens, mask):
    h = (self.embed(tokens) * mask.unsqueeze(-1)).sum(dim=2)
    return self.backbone(h)  # no mask: torchtune attends causally

  @torch.no_grad()
  def decoder_logits(self, h, codes):
    """Logits of codebooks 1..31 for frames (M, W) with codes (M, 32)."""
    offsets = AUDIO_VOCAB * torch.arange(CODEBOOKS - 1)
    emb = self.audio_embeddings(codes[:, :-1] + offsets)
    seq = torch.cat([h.unsqueeze(1), emb], dim=1)
    hd = self.decoder(self.projection(seq))
    return torch.einsum("mcd,cdv->mcv", hd[:, 1:], self.audio_head)


def csm_reference(seed: int = 0) -> CSMReference:
  torch.manual_seed(seed)
  model = CSMReference().eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if name.endswith("scale"):  # RMSNorm scales: not all ones
        p.uniform_(0.5, 1.5)
  return model


def mimi_reference(seed: int = 0, calibration: np.ndarray | None = None):
  """moshi's Mimi, random weights, 32 codebooks.

  Codebooks are random (``embedding_sum`` and positive ``cluster_usage``)
  at the scale of the projected latent of ``calibration`` audio (B, T), so
  the nearest code varies from frame to frame (all-zero codebooks, as
  ``get_mimi(None)`` has them, would give code 0 everywhere).
  """
  from moshi.models import loaders  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  mimi = loaders.get_mimi(None, device="cpu")
  mimi.set_num_codebooks(32)
  scale = 1.0
  with torch.no_grad():
    if calibration is not None:
      x = torch.as_tensor(calibration, dtype=torch.float32)[:, None]
      z = mimi.quantizer.rvq_rest.input_proj(
          mimi._encode_to_unquantized_latent(x))  # pylint: disable=protected-access
      scale = float(z.std())
    for name, b in mimi.named_buffers():
      if name.endswith("cluster_usage"):
        b.copy_(torch.rand_like(b) * 4.0 + 0.5)
    usage = {n: b for n, b in mimi.named_buffers()
             if n.endswith("cluster_usage")}
    for name, b in mimi.named_buffers():
      if name.endswith("embedding_sum"):
        cu = usage[name.replace("embedding_sum", "cluster_usage")]
        b.copy_(torch.randn_like(b) * scale * cu[:, None])
    for name, p in mimi.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.uniform_(0.5, 1.5)
      elif "norm" in name and name.endswith("bias"):
        p.normal_(0.0, 0.1)
      elif "layer_scale" in name:
        p.uniform_(0.05, 0.3)
  return mimi.eval()


def state_numpy(module) -> dict[str, np.ndarray]:
  return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def save_safetensors(module, path) -> None:
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
  save_file(state, str(path))
