"""Configs back from JSON: the inverse of ``ConfigDict.to_json``.

JSON has no tuples, so the lists it gives back are turned into tuples again,
as the size table writes them (channel lists, STFT resolutions, meshes).
"""

from __future__ import annotations

import ml_collections


def _tuples(x):
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def config_from_json_dict(raw: dict) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(_tuples(raw))
