"""Opening a PyTorch checkpoint and reading its tensors one at a time.

``open_checkpoint`` gives a ``Checkpoint``: every tensor's shape from the
file's header, and its data only when asked for (``Checkpoint.float32``),
so a converter holds one source tensor at a time, not the file.

A ``.safetensors`` file is an 8-byte little-endian header length, a JSON
header (name -> dtype, shape, byte offsets into the data that follows) and
the raw data; it is parsed here directly, each tensor memory-mapped on its
own (unmapped when dropped), so converting one needs neither torch nor the
``safetensors`` package, and a truncated or corrupt file is reported with
the tensor it breaks. ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` files are
pickles that only torch can read; they are opened with
``torch.load(weights_only=True, mmap=True)`` when torch is installed (the
``interop`` extra), and the file pages of a tensor are handed back to the
kernel once it has been converted (they stay in the page cache; without
that, the process's resident memory would grow to the whole file).
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import json
import mmap
import os
import struct
from typing import Iterator

import ml_dtypes
import numpy as np

from csm_jax.config.errors import UserError
from csm_jax.store import layout

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


class Checkpoint(abc.ABC):
  """The tensors of one checkpoint file: shapes up front, data on demand."""

  path: str
  shapes: dict[str, tuple[int, ...]]

  @abc.abstractmethod
  def stored(self, name: str) -> np.ndarray:
    """The tensor as stored (bf16 as ``ml_dtypes.bfloat16``), read-only and
    usually a view of the mapped file."""

  def _release(self, name: str) -> None:
    """Gives the file pages ``name`` was read from back (if they stay
    mapped after its arrays are dropped)."""

  @contextlib.contextmanager
  def float32(self, name: str) -> Iterator[np.ndarray]:
    """The tensor as float32 for the ``with`` block: a view of the mapped
    file when stored as float32 (no copy), else one converted copy. Keep
    nothing of it past the block: its pages are released on exit."""
    a = self.stored(name)
    try:
      if a.dtype != np.float32:
        a = a.astype(np.float32)
      yield a
    finally:
      del a
      self._release(name)

  def close(self) -> None:
    """Drops whatever the file's reader holds."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def open_checkpoint(path: str) -> Checkpoint:
  """The checkpoint at ``path`` (its header read and checked, no data).

  Raises ConversionError naming the file (and the tensor) for anything
  unreadable, and for a directory or a file of another kind.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise ConversionError(_directory_message(path))
  if not os.path.isfile(path):
    raise ConversionError(f"{path}: no such file")
  if path.endswith(SAFETENSORS_SUFFIXES):
    return SafetensorsCheckpoint(path)
  if path.endswith(TORCH_SUFFIXES):
    return TorchCheckpoint(path)
  raise ConversionError(
      f"{path}: unknown checkpoint format; expected one of "
      f"{SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")


def _directory_message(path: str) -> str:
  if layout.is_export(path):
    return (f"{path}: a csm_jax export, not a PyTorch checkpoint: it needs "
            "no conversion (generate, evaluate and train load it as it is)")
  inside = sorted(f for f in os.listdir(path)
                  if f.endswith(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES))
  if inside:
    return (f"{path}: a directory, not a checkpoint file; give the file "
            f"itself, e.g. {os.path.join(path, inside[0])}")
  return (f"{path}: a directory without a checkpoint file (none ending in "
          f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}); give the "
          "checkpoint file itself")


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """Every tensor of a checkpoint file by name, as stored (views of the
  mapped file where possible); for small files and tests."""
  ckpt = open_checkpoint(path)
  return {name: ckpt.stored(name) for name in ckpt.shapes}


# -- safetensors --------------------------------------------------------------
class SafetensorsCheckpoint(Checkpoint):
  """A safetensors file, its header checked against the file's size."""

  def __init__(self, path: str):
    self.path = path
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
      raise ConversionError(f"{path}: header is not valid JSON ({e}); the "
                            "file is corrupt or not safetensors") from e
    if not isinstance(header, dict):
      raise ConversionError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    self._data_start, data_len = 8 + n, size - 8 - n
    self._entries: dict[str, tuple[np.dtype, int]] = {}
    self.shapes = {}
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
            f"{path}: tensor {name!r} needs bytes {begin}..{end} but the "
            f"file holds {data_len} bytes of data: truncated")
      if end - begin != want or begin < 0:
        raise ConversionError(
            f"{path}: tensor {name!r} of shape {shape} ({info['dtype']}) "
            f"needs {want} bytes, its header gives {end - begin}: corrupt "
            "header")
      self._entries[name] = (dtype, begin)
      self.shapes[name] = shape

  def stored(self, name: str) -> np.ndarray:
    dtype, begin = self._entries[name]
    shape = self.shapes[name]
    if not int(np.prod(shape, dtype=np.int64)):
      return np.zeros(shape, dtype)
    # One mapping per tensor: it is unmapped when the array is dropped.
    return np.memmap(self.path, dtype=dtype, mode="r",
                     offset=self._data_start + begin, shape=shape)


# -- torch pickles ------------------------------------------------------------
class TorchCheckpoint(Checkpoint):
  """A torch pickle (a state dict, or one under "model" or "state_dict"),
  memory-mapped; needs torch."""

  def __init__(self, path: str):
    self.path = path
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ConversionError(
          f"{path}: reading a torch pickle needs torch (pip install -e "
          "'.[interop]'); a .safetensors checkpoint converts without it") from e
    self._torch = torch
    obj = self._load(mmap_file=True)
    for key in ("model", "state_dict"):
      if isinstance(obj, dict) and isinstance(obj.get(key), dict):
        obj = obj[key]
    if not isinstance(obj, dict):
      raise ConversionError(f"{path}: holds a {type(obj).__name__}, not a "
                            "state dict of tensors")
    for name, t in obj.items():
      if not isinstance(t, torch.Tensor):
        raise ConversionError(f"{path}: entry {name!r} is a "
                              f"{type(t).__name__}, not a tensor")
    self._tensors = obj
    self.shapes = {name: tuple(t.shape) for name, t in obj.items()}
    self._mapped = _file_mappings(path)

  def _load(self, mmap_file: bool):
    try:
      return self._torch.load(self.path, map_location="cpu",
                              weights_only=True, mmap=mmap_file)
    except Exception as e:  # pylint: disable=broad-except
      if mmap_file and "mmap" in str(e):
        # A pickle in torch's legacy (pre-zip) format cannot be mapped.
        return self._load(mmap_file=False)
      raise ConversionError(f"{self.path}: torch could not read it "
                            f"({type(e).__name__}: {str(e)[:200]})") from e

  def stored(self, name: str) -> np.ndarray:
    t = self._tensors[name].detach()
    torch = self._torch
    # numpy has no bf16/fp8: view the bits, then ml_dtypes' type.
    bits = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
            torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn),
            torch.float8_e5m2: (torch.uint8, ml_dtypes.float8_e5m2)}
    if t.dtype in bits:
      as_int, as_np = bits[t.dtype]
      return t.view(as_int).numpy().view(as_np)
    return t.numpy()

  def _release(self, name: str) -> None:
    storage = self._tensors[name].untyped_storage()
    _dont_need(storage.data_ptr(), storage.nbytes(), self._mapped)

  def close(self) -> None:
    self._tensors = {}


def _file_mappings(path: str) -> list[tuple[int, int]]:
  """Address ranges at which this process maps ``path`` (Linux; empty
  elsewhere)."""
  real = os.path.realpath(path)
  try:
    with open("/proc/self/maps", encoding="utf-8",
              errors="replace") as f:
      lines = f.read().splitlines()
  except OSError:
    return []
  ranges = []
  for line in lines:
    parts = line.split(None, 5)
    if len(parts) == 6 and parts[5] == real:
      start, end = (int(x, 16) for x in parts[0].split("-"))
      ranges.append((start, end))
  return ranges


def _dont_need(address: int, nbytes: int,
               mapped: list[tuple[int, int]]) -> None:
  """Drops this process's pages of [address, address + nbytes) that lie in
  a mapping of the checkpoint file: file-backed pages the kernel reads
  again if touched, so no data is lost (never applied to other memory)."""
  if not mapped or not hasattr(mmap, "MADV_DONTNEED"):
    return
  page = mmap.PAGESIZE
  lo = address - address % page
  hi = address + nbytes
  libc = ctypes.CDLL(None, use_errno=True)
  for start, end in mapped:
    a, b = max(lo, start), min(hi, end)
    if a < b:
      b = min(end, b + (-b) % page)
      libc.madvise(ctypes.c_void_p(a), ctypes.c_size_t(b - a),
                   mmap.MADV_DONTNEED)
