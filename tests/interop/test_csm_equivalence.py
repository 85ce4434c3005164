"""Converted Sesame CSM == the torchtune reference, in float32.

The reference (tests/interop/references.py) is torchtune's llama3_2 with
CSM's embeddings and heads, random weights; it is saved in the
reference's naming (safetensors, and a torch pickle), converted with
``python -m csm_jax.convert csm``'s library function, restored as any
export is, and compared: backbone hidden states, codebook-0 logits and
depth-decoder logits within 1e-4 relative.
"""

import numpy as np
import pytest
import torch

from csm_jax.interop.convert import convert_csm
from csm_jax.interop.safetensors_io import ConversionError, read_tensors
from csm_jax.store.restore import restore_params
from tests.interop import references as refs
from tests.interop.conftest import small_csm_config

TOL = 1e-4


def rel(ours, theirs) -> float:
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


@pytest.fixture(scope="module")
def converted(csm_file, tmp_path_factory):
  out = tmp_path_factory.mktemp("csm_export") / "export"
  convert_csm(str(csm_file), str(out), config=small_csm_config(),
              dtype="float32")
  return restore_params(str(out))


def conversation(batch=2, text_rows=12, audio_rows=36, seed=0):
  """Rows as CSM lays a turn out: text rows (text column only), then audio
  frames (the 32 audio columns only)."""
  rng = np.random.default_rng(seed)
  t = text_rows + audio_rows
  tokens = np.zeros((batch, t, refs.CODEBOOKS + 1), np.int64)
  mask = np.zeros((batch, t, refs.CODEBOOKS + 1), bool)
  tokens[:, :text_rows, -1] = rng.integers(0, refs.TEXT_VOCAB,
                                           (batch, text_rows))
  mask[:, :text_rows, -1] = True
  tokens[:, text_rows:, :-1] = rng.integers(0, 2048, (batch, audio_rows,
                                                      refs.CODEBOOKS))
  mask[:, text_rows:, :-1] = True
  return tokens, mask


def test_backbone_codebook0_and_decoder_match(converted, csm_ref):
  model = converted.model()
  tokens, mask = conversation()
  b, t, _ = tokens.shape
  h_ref = csm_ref.backbone_hidden(torch.as_tensor(tokens),
                                  torch.as_tensor(mask, dtype=torch.float32))
  c0_ref = csm_ref.codebook0_head(h_ref).detach().numpy()
  positions = np.broadcast_to(np.arange(t, dtype=np.int32), (b, t))
  h = model.backbone_hidden(tokens[..., :-1].astype(np.int32),
                            tokens[..., -1].astype(np.int32), mask,
                            positions, np.ones((b, t), np.int32))
  assert rel(h, h_ref.numpy()) < TOL
  assert rel(model.codebook0_head(h), c0_ref) < TOL

  m = b * t
  codes = np.random.default_rng(1).integers(0, 2048, (m, refs.CODEBOOKS))
  h_flat = h_ref.reshape(m, -1)
  dec_ref = csm_ref.decoder_logits(h_flat, torch.as_tensor(codes)).numpy()
  dec = model.decoder_logits(h_flat.numpy(), codes.astype(np.int32))
  assert dec.shape == dec_ref.shape == (m, refs.CODEBOOKS - 1,
                                        refs.AUDIO_VOCAB)
  assert rel(dec, dec_ref) < TOL


def test_a_text_window_changes_text_rows(converted, csm_ref):
  """Why csm_1b is fully causal: a 4-row text window (the default 256 rows
  at our small length) makes the converted model disagree."""
  model = converted.model()
  tokens, mask = conversation(batch=1, text_rows=20, audio_rows=4)
  b, t, _ = tokens.shape
  model.text_window = 4
  h = model.backbone_hidden(tokens[..., :-1].astype(np.int32),
                            tokens[..., -1].astype(np.int32), mask,
                            np.arange(t, dtype=np.int32)[None],
                            np.ones((b, t), np.int32))
  h_ref = csm_ref.backbone_hidden(torch.as_tensor(tokens),
                                  torch.as_tensor(mask, dtype=torch.float32))
  assert rel(h, h_ref.numpy()) > 1e-2


def test_torch_pickle_converts_to_the_same_weights(csm_ref, csm_file,
                                                   converted, tmp_path):
  pt = tmp_path / "ckpt.pt"
  torch.save({"model": csm_ref.state_dict()}, pt)
  assert sorted(read_tensors(str(pt))) == sorted(read_tensors(str(csm_file)))
  out = tmp_path / "from_pt"
  convert_csm(str(pt), str(out), config=small_csm_config(), dtype="float32")
  a = restore_params(str(out)).params["model"]
  b = converted.params["model"]
  for x, y in zip(__import__("jax").tree.leaves(a),
                  __import__("jax").tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_partial_window_is_refused(csm_file, tmp_path):
  c = small_csm_config()
  c.model.text_window = 8
  with pytest.raises(ConversionError, match="text_window"):
    convert_csm(str(csm_file), str(tmp_path / "o"), config=c)
  assert not (tmp_path / "o").exists()
