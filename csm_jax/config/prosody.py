"""``model.prosody``: the prosody stream of two-stage generation (off by default).

With ``enabled`` every codec frame carries prosody tokens beside its codes:
an F0 bin of speaker-normalized log F0 (``f0_bins`` levels over
``[-f0_range, f0_range]`` standard deviations, plus one id for unvoiced
frames), an energy bin (``energy_bins`` levels, quantiles of the training
frames) and, per turn, a style token (``style_classes`` emotion classes x
``intensity_bins`` intensity levels, plus one id for "unknown"). Stage 1
(the backbone) predicts them per frame through their own heads and reads
them back as an extra column; stage 2 (codebook 0 and the depth decoder) is
conditioned on them. Off, the model is exactly the plain CSM. Binning and
the contour extraction: docs/prosody.md.
"""

from __future__ import annotations

import ml_collections

# Fields that change what a checkpoint holds or what its tokens mean; the
# loss weights only change training.
STRUCTURAL = ("enabled", "f0_bins", "f0_range", "energy_bins",
              "style_classes", "intensity_bins")


def prosody_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      enabled=False,
      f0_bins=32,
      f0_range=2.5,
      energy_bins=8,
      style_classes=8,
      intensity_bins=3,
      # Weight of the frame streams' loss (F0 + energy + voicing, averaged)
      # and of the per-turn style loss, added to the audio loss.
      loss_weight=1.0,
      style_loss_weight=0.2,
  ))


def enabled(model_config) -> bool:
  """Whether ``config.model`` has the stream on (older runs have no field)."""
  p = model_config.get("prosody") if model_config is not None else None
  return bool(p is not None and p.get("enabled", False))


def style_vocab(p) -> int:
  """Style ids: emotion * intensity_bins + intensity, then "unknown"."""
  return p.style_classes * p.intensity_bins


def validate(p, check) -> None:
  """Checks ``model.prosody`` with ``check(cond, field, message)``."""
  check(4 <= p.f0_bins <= 256, "model.prosody.f0_bins",
        f"must be in [4, 256] (the plan asks 32-64), got {p.f0_bins}")
  check(p.f0_range > 0, "model.prosody.f0_range",
        f"must be positive (standard deviations), got {p.f0_range}")
  check(2 <= p.energy_bins <= 64, "model.prosody.energy_bins",
        f"must be in [2, 64], got {p.energy_bins}")
  check(1 <= p.style_classes <= 64, "model.prosody.style_classes",
        f"must be in [1, 64], got {p.style_classes}")
  check(1 <= p.intensity_bins <= 16, "model.prosody.intensity_bins",
        f"must be in [1, 16], got {p.intensity_bins}")
  check(p.loss_weight >= 0, "model.prosody.loss_weight", "must be >= 0")
  check(p.style_loss_weight >= 0, "model.prosody.style_loss_weight",
        "must be >= 0")


def structural_dict(p) -> dict:
  return {k: p[k] for k in STRUCTURAL}
