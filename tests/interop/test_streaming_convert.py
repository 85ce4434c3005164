"""The converter reads one tensor at a time and writes what it wrote before.

A small CSM checkpoint with the released names is filled with a portable
integer pattern (no random generator, no libm), saved as safetensors (float32
and bf16) and as a torch pickle, and converted. The exported parameters must
hash to the digests the in-memory converter produced for the same files
(recorded before it was replaced), for both stored dtypes; and while
converting, at most one source tensor is open, none outlives its use, and the
numpy memory held beyond the output is about one source tensor in float32.
While the export is written, each parameter is made only when the save
reaches it and is gone before the next is made; a tensor that fails part-way
leaves no output directory.
"""

import contextlib
import dataclasses
import hashlib
import tracemalloc
import weakref

import jax
import ml_dtypes
import numpy as np
import pytest

from csm_jax.interop import convert, csm_names, streaming
from csm_jax.interop.convert import convert_csm
from csm_jax.interop.safetensors_io import ConversionError, open_checkpoint
from csm_jax.store import export, models
from csm_jax.store.restore import restore_params
from tests.interop.conftest import small_csm_config

# sha256 over (name, dtype, shape, bytes) of every exported parameter, from
# the converter before it streamed (commit 665942f), on write_checkpoint's
# files: source float32 -> bf16 export, -> float32 export; source bf16 ->
# float32 export.
DIGESTS = {
    ("float32", "bfloat16"):
        "a46bcf00c93a0a8014aa1cc9508cdbdd24dfa8e173248575cb2e9d2a36c52b7f",
    ("float32", "float32"):
        "1b765900e4c7575d4f5070982aa2b6f2a853b529686f4fbef212f45f9a7ac5a7",
    ("bfloat16", "float32"):
        "a59478b6b7e644d61cc6c5e5d9a9eef8f353b49f7652bf1d9754099781b0a526",
}


def released_shapes(m) -> dict[str, tuple[int, ...]]:
  """Names and shapes of Sesame's checkpoint (torchtune layout) for the
  model config ``m``, in the order the reference stores them."""
  shapes = {}
  for stack in ("backbone", "decoder"):
    t = m[stack]
    hd = t.head_dim or t.width // t.heads
    for n in range(t.depth):
      p = f"{stack}.layers.{n}"
      shapes[f"{p}.attn.q_proj.weight"] = (t.heads * hd, t.width)
      shapes[f"{p}.attn.k_proj.weight"] = (t.kv_heads * hd, t.width)
      shapes[f"{p}.attn.v_proj.weight"] = (t.kv_heads * hd, t.width)
      shapes[f"{p}.attn.output_proj.weight"] = (t.width, t.heads * hd)
      shapes[f"{p}.mlp.w1.weight"] = (t.mlp, t.width)
      shapes[f"{p}.mlp.w2.weight"] = (t.width, t.mlp)
      shapes[f"{p}.mlp.w3.weight"] = (t.mlp, t.width)
      shapes[f"{p}.sa_norm.scale"] = (t.width,)
      shapes[f"{p}.mlp_norm.scale"] = (t.width,)
    shapes[f"{stack}.norm.scale"] = (t.width,)
  wb, wd = m.backbone.width, m.decoder.width
  shapes["text_embeddings.weight"] = (m.text_vocab, wb)
  shapes["audio_embeddings.weight"] = (m.n_codebooks * m.audio_vocab, wb)
  shapes["projection.weight"] = (wd, wb)
  shapes["codebook0_head.weight"] = (m.audio_vocab, wb)
  shapes["audio_head"] = (m.n_codebooks - 1, wd, m.audio_vocab)
  return shapes


def pattern(shape, salt: int) -> np.ndarray:
  """float32 values in [-1, 1) from an integer hash of the index: the same
  bits on every machine."""
  i = np.arange(int(np.prod(shape)), dtype=np.uint64)
  x = (i * np.uint64(2654435761) + np.uint64(salt * 40503 + 7)) % np.uint64(
      2**32)
  x = (x ^ (x >> np.uint64(13))) * np.uint64(1274126177) % np.uint64(2**32)
  v = (x >> np.uint64(8)).astype(np.float64) / 2**23 - 1.0
  return v.astype(np.float32).reshape(shape)


def write_checkpoint(path, m, dtype: str = "float32") -> dict:
  """A checkpoint of ``released_shapes(m)`` filled with ``pattern``:
  safetensors, or a torch pickle when ``path`` ends with .pt."""
  np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else \
      np.dtype(np.float32)
  tensors = {name: pattern(shape, salt).astype(np_dtype)
             for salt, (name, shape) in enumerate(released_shapes(m).items())}
  if str(path).endswith(".pt"):
    import torch  # pylint: disable=g-import-not-at-top
    def as_torch(v):
      if v.dtype == np.float32:
        return torch.from_numpy(v)
      return torch.from_numpy(v.view(np.int16)).view(torch.bfloat16)
    torch.save({k: as_torch(v) for k, v in tensors.items()}, str(path))
  else:
    from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
    save_file(tensors, str(path))
  return tensors


def export_digest(out) -> str:
  """sha256 of an export's parameters as stored (name, dtype, shape, bytes)."""
  r = restore_params(str(out))
  h = hashlib.sha256()
  for name, leaf in sorted(models.flatten(r.params).items()):
    a = np.asarray(leaf)
    h.update(f"{name} {a.dtype} {a.shape}\n".encode())
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


@pytest.fixture(scope="module")
def small_model():
  return small_csm_config().model


@pytest.mark.parametrize("source,dtype", sorted(DIGESTS))
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_export_is_the_one_written_before(small_model, tmp_path, source,
                                          dtype, suffix):
  path = tmp_path / f"model{suffix}"
  write_checkpoint(path, small_model, source)
  convert_csm(str(path), str(tmp_path / "out"), config=small_csm_config(),
              dtype=dtype)
  assert export_digest(tmp_path / "out") == DIGESTS[(source, dtype)]


class Watched:
  """A checkpoint whose ``float32`` tensors are counted: how many are open
  at once, and how many are still alive (referenced) when the next opens."""

  def __init__(self, ckpt):
    self.ckpt, self.path, self.shapes = ckpt, ckpt.path, ckpt.shapes
    self.open = self.alive = self.most_open = self.most_alive = 0
    self.reads = 0

  def _gone(self):
    self.alive -= 1

  def stored(self, name):
    return self.ckpt.stored(name)

  @contextlib.contextmanager
  def float32(self, name):
    with self.ckpt.float32(name) as t:
      self.reads += 1
      self.open += 1
      self.alive += 1
      self.most_open = max(self.most_open, self.open)
      self.most_alive = max(self.most_alive, self.alive)
      weakref.finalize(t, self._gone)
      try:
        yield t
      finally:
        self.open -= 1
        del t


def abstract_csm(config):
  _, params, _ = models.abstract(
      lambda rngs: models.build_model(config, rngs), models.param_groups("csm"))
  return params["model"]


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_one_source_tensor_at_a_time(small_model, tmp_path, suffix):
  """bf16 sources, so each read is a float32 copy tracemalloc sees (a
  float32 source is a view of the mapped file, which it does not)."""
  config = small_csm_config()
  path = tmp_path / f"model{suffix}"
  tensors = write_checkpoint(path, small_model, "bfloat16")
  largest_f32 = max(t.size for t in tensors.values()) * 4
  del tensors
  abstract = abstract_csm(config)
  out_bytes = sum(leaf.size for leaf in jax.tree.leaves(abstract)) * 2
  with open_checkpoint(str(path)) as ckpt:
    watched = Watched(ckpt)
    recipes = csm_names.csm_recipes(watched, config.model)
    tracemalloc.start()
    try:
      state = streaming.fill(abstract, recipes, watched, "bfloat16", "test")
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
  assert watched.reads == len(watched.shapes)
  assert watched.most_open == 1 and watched.most_alive == 1
  assert watched.alive == 0
  # The in-memory converter held every source in float32 as well (61 MB
  # here, the largest 33 MB): now the bf16 output (which jax may share with
  # numpy), one source tensor in float32 and what its layout makes of it.
  assert peak <= out_bytes + largest_f32 + 2 * 2**20, (peak, out_bytes,
                                                       largest_f32)
  assert len(jax.tree.leaves(state)) == len(recipes)


def test_one_parameter_at_a_time_while_writing(small_model, tmp_path,
                                               monkeypatch):
  path = tmp_path / "model.safetensors"
  write_checkpoint(path, small_model)
  count = {"made": 0, "alive": 0, "most": 0}
  real_make = export.Deferred.make

  def gone():
    count["alive"] -= 1

  def make(self):
    array = real_make(self)
    count["made"] += 1
    count["alive"] += 1
    count["most"] = max(count["most"], count["alive"])
    weakref.finalize(array, gone)
    return array

  monkeypatch.setattr(export.Deferred, "make", make)
  convert_csm(str(path), str(tmp_path / "out"), config=small_csm_config())
  n_params = len(jax.tree.leaves(abstract_csm(small_csm_config())))
  assert count["made"] == n_params
  assert count["most"] == 1 and count["alive"] == 0
  assert export_digest(tmp_path / "out") == DIGESTS[("float32", "bfloat16")]


def test_failure_while_writing_leaves_no_export(small_model, tmp_path,
                                                monkeypatch):
  """A source that cannot be converted once the save has begun (here the
  third parameter's) is the converter's error, and the half-written export
  is removed."""
  path = tmp_path / "model.safetensors"
  write_checkpoint(path, small_model)
  real_recipes = csm_names.csm_recipes

  def broken(t):
    raise ConversionError(f"{path}: cannot read this tensor")

  def recipes(ckpt, m):
    rs = list(real_recipes(ckpt, m))
    rs[2] = dataclasses.replace(rs[2], fn=broken)
    return rs

  monkeypatch.setattr(convert, "csm_recipes", recipes)
  with pytest.raises(ConversionError, match="cannot read this tensor"):
    convert_csm(str(path), str(tmp_path / "out"), config=small_csm_config())
  assert not (tmp_path / "out").exists()
