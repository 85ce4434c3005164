"""Reading a PyTorch checkpoint's tensors into numpy, safetensors without torch.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON
header (name -> dtype, shape, byte offsets into the data that follows) and
the raw data; it is parsed here directly (memory-mapped), so converting one
needs neither torch nor the ``safetensors`` package, and a truncated or
corrupt file is reported with the tensor it breaks. ``.pt`` / ``.pth`` /
``.bin`` / ``.ckpt`` files are pickles that only torch can read; they are
opened with ``torch.load(weights_only=True)`` when torch is installed (the
``interop`` extra).
"""

from __future__ import annotations

import json
import os
import struct

import ml_dtypes
import numpy as np

from csm_jax.config.errors import UserError

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("bool"),
}
_MAX_HEADER = 100 * 2**20


class ConversionError(UserError, ValueError):
  """A checkpoint cannot be converted; the message names the file and tensor."""


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a checkpoint file by name, as numpy arrays.

  Floating tensors keep their stored dtype (bf16 as ``ml_dtypes.bfloat16``);
  callers cast. Raises ConversionError naming the file (and the tensor)
  for anything unreadable.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise ConversionError(f"{path}: no such file")
  if path.endswith(SAFETENSORS_SUFFIXES):
    return read_safetensors(path)
  if path.endswith(TORCH_SUFFIXES):
    return read_torch(path)
  raise ConversionError(
      f"{path}: unknown checkpoint format; expected one of "
      f"{SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")


def read_safetensors(path: str) -> dict[str, np.ndarray]:
  """Tensors of a safetensors file, memory-mapped and checked against the
  file's size."""
  size = os.path.getsize(path)
  if size < 8:
    raise ConversionError(f"{path}: {size} bytes is too short for a "
                          "safetensors file (truncated?)")
  with open(path, "rb") as f:
    (n,) = struct.unpack("<Q", f.read(8))
    if n > min(size - 8, _MAX_HEADER):
      raise ConversionError(f"{path}: header length {n} exceeds the file "
                            f"({size} bytes): truncated or not safetensors")
    raw = f.read(n)
  try:
    header = json.loads(raw.decode("utf-8"))
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise ConversionError(f"{path}: header is not valid JSON ({e}); the file "
                          "is corrupt or not safetensors") from e
  if not isinstance(header, dict):
    raise ConversionError(f"{path}: header is not a JSON object")
  header.pop("__metadata__", None)
  data_start, data_len = 8 + n, size - 8 - n
  mm = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start,
                 shape=(data_len,)) if data_len else np.zeros(0, np.uint8)
  out = {}
  for name, info in header.items():
    try:
      dtype = _DTYPES[info["dtype"]]
      shape = tuple(int(d) for d in info["shape"])
      begin, end = (int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      bad = info.get("dtype") if isinstance(info, dict) else info
      raise ConversionError(f"{path}: tensor {name!r} has an unreadable "
                            f"header entry ({bad!r})") from e
    want = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if end > data_len:
      raise ConversionError(
          f"{path}: tensor {name!r} needs bytes {begin}..{end} but the file "
          f"holds {data_len} bytes of data: truncated")
    if end - begin != want or begin < 0:
      raise ConversionError(
          f"{path}: tensor {name!r} of shape {shape} ({info['dtype']}) needs "
          f"{want} bytes, its header gives {end - begin}: corrupt header")
    out[name] = mm[begin:end].view(dtype).reshape(shape)
  return out


def read_torch(path: str) -> dict[str, np.ndarray]:
  """Tensors of a torch pickle (a state dict, or one under "model" or
  "state_dict"); needs torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ConversionError(
        f"{path}: reading a torch pickle needs torch (pip install -e "
        "'.[interop]'); a .safetensors checkpoint converts without it") from e
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(f"{path}: torch could not read it "
                          f"({type(e).__name__}: {str(e)[:200]})") from e
  for key in ("model", "state_dict"):
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
  if not isinstance(obj, dict):
    raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a "
                          "state dict of tensors")
  out = {}
  for name, t in obj.items():
    if not isinstance(t, torch.Tensor):
      raise ConversionError(f"{path}: entry {name!r} is a "
                            f"{type(t).__name__}, not a tensor")
    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
      out[name] = t.float().numpy().astype(ml_dtypes.bfloat16)
    else:
      out[name] = t.numpy()
  return out
