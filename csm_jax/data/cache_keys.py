"""Cache keys: the identity of a codec export and of a built corpus split.

Every cache derived from a corpus and a codec (codec tokens, prosody
contours) lives under ``<dataset dir>/codes/<codec fingerprint>/`` and is
named by the split's corpus fingerprint, so a new codec or a rebuilt corpus
is never served from a stale cache.
"""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Sequence


def fingerprint(files: Sequence[str]) -> str:
  """A short hash of a codec export's files (its identity for the cache)."""
  h = hashlib.sha256()
  for f in sorted(files):
    h.update(os.path.basename(f).encode())
    with open(f, "rb") as fh:
      h.update(fh.read())
  return h.hexdigest()[:16]


def corpus_fingerprint(dataset_dir: str, split: str) -> str:
  """A short hash of a built split's data files (names, sizes, mtimes).

  A rebuild writes new files, so the token cache of the old build is never
  read for the new one, even when a rebuilt turn kept its length.
  """
  files = sorted(glob.glob(os.path.join(dataset_dir, f"*-{split}.*")))
  files = files or [os.path.join(dataset_dir, "dataset_info.json")]
  h = hashlib.sha256()
  for f in files:
    try:
      st = os.stat(f)
    except OSError:
      continue
    h.update(f"{os.path.basename(f)}\0{st.st_size}\0{st.st_mtime_ns}\n"
             .encode())
  return h.hexdigest()[:12]
