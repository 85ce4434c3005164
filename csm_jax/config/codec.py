"""Config and validation of the neural audio codec (SEANet + transformer + RVQ).

``codec_config(name)`` builds the codec config of one row of
``config.sizes.CODECS`` (shapes) with its training recipe (losses,
discriminator, crop length): ``debug`` trains on two CPU cores in minutes;
``mimi`` has the shape of Kyutai's Mimi (24 kHz, 12.5 Hz frames, 32 x 2048
split RVQ) and computes as Mimi does (replicate-padded downsample, depthwise
upsample, exact GELU), so Mimi's weights convert into it exactly; ``base``
is that shape with the research plan's generic quantizer
(``RVQEncoder(layers=32, codebook_size=1024)``) and our own layers.
"""

from __future__ import annotations

import math

import ml_collections

from csm_jax.config import sizes as sizes_lib

SIZES = tuple(sizes_lib.codec_names())
PAD_MODES = ("zeros", "replicate")

# Options that make the codec compute as Mimi does, with the values that
# codecs saved before the options existed were built with.
LEGACY_DEFAULTS = (("downsample_pad", "zeros"), ("upsample_depthwise", False),
                   ("transformer.exact_gelu", False))


def _rvq(levels, codebook_size, codebook_dim, dead_code_threshold=0.1):
  return ml_collections.ConfigDict(dict(
      levels=levels,
      codebook_size=codebook_size,
      codebook_dim=codebook_dim,
      ema_decay=0.99,
      # Laplace smoothing of EMA cluster sizes, so an empty cluster never
      # divides by zero.
      epsilon=1e-5,
      # A code whose EMA count falls below this fraction of the mean count
      # (vectors per step / codebook size) is dead and restarted at a random
      # batch vector. Relative, so it holds for any batch size.
      dead_code_threshold=dead_code_threshold,
      kmeans_iters=10,
      quantizer_dropout=0.5,
      commitment_weight=1.0,
  ))


def _from_row(row: dict) -> ml_collections.ConfigDict:
  """A codec config with the shapes of one size-table row and the full-size
  recipe (losses, discriminator, crop); ``_debug_recipe`` scales it down."""
  layers, width, heads, context = row["transformer"]
  levels, codes, dim = row["rvq"]
  return ml_collections.ConfigDict(dict(
      sample_rate=row["sample_rate"],
      channels=row["channels"],
      # Decoder upsampling order (as Mimi/EnCodec list them); the encoder
      # applies them reversed.
      ratios=row["ratios"],
      downsample=row["downsample"],  # e.g. 25 Hz latent -> 12.5 Hz frames
      # "zeros" or "replicate" (the first latent frame repeated) left pad of
      # the strided downsample conv; a depthwise (one kernel per channel)
      # or dense transposed conv to upsample.
      downsample_pad=row["downsample_pad"],
      upsample_depthwise=row["upsample_depthwise"],
      n_residual=1,
      kernel_size=7,
      last_kernel_size=3,
      residual_kernel_size=3,
      dilation_base=2,
      compress=2,
      latent_dim=row["latent_dim"],
      transformer=ml_collections.ConfigDict(dict(
          enabled=True, layers=layers, width=width, heads=heads, mlp_ratio=4,
          context=context, rope_base=10_000.0, layer_scale=0.01,
          # Exact (erf) GELU in the MLP, or its tanh approximation.
          exact_gelu=row["exact_gelu"])),
      rvq=_rvq(levels, codes, dim),
      semantic=ml_collections.ConfigDict(dict(
          # Level 0 gets its own quantizer whose output is distilled toward a
          # self-supervised speech model's features (WavLM-large: 1024 dims),
          # supplied per frame in the batch field "semantic_targets".
          enabled=row["semantic"], target_dim=1024 if row["semantic"] else 0,
          weight=1.0 if row["semantic"] else 0.0)),
      losses=ml_collections.ConfigDict(dict(
          mel_windows=(64, 128, 256, 512, 1024, 2048),
          mel_bins=(16, 32, 64, 64, 64, 64),
          stft_resolutions=((512, 128), (1024, 256), (2048, 512)),
          mel_weight=1.0,
          stft_weight=1.0,
          # Negative SI-SDR in dB (losses.waveform_loss): the only term that
          # sees phase. Mimi trains without it; 0.0 keeps that recipe.
          waveform_weight=0.0,
          adversarial_weight=1.0,
          feature_matching_weight=3.0,
          adversarial_warmup_steps=5_000,
      )),
      discriminator=ml_collections.ConfigDict(dict(
          n_ffts=(2048, 1024, 512, 256, 128), channels=32, layers=3)),
      segment_seconds=2.0,
      dtype="float32",
      param_dtype="float32",
  ))


def _debug_recipe(c) -> None:
  """The CPU recipe of the debug row.

  A shared-trainer step on a batch of 8 x 0.5 s takes about a second on two
  (busy) CPU cores; configs/codec_debug.py (downsample 4: 25 Hz, 1.6 kbps)
  lists what 400 steps reach on held-out speech. It has every component of the
  full model (transformer, RVQ with EMA/k-means/dead codes/dropout, GAN;
  adversarial terms from step 200) so the CPU run exercises the same paths.
  256 codes because a CPU batch holds only a few hundred latent vectors;
  larger codebooks would stay mostly dead.
  """
  c.losses.mel_windows = (128, 256, 512, 1024)
  c.losses.mel_bins = (16, 32, 64, 64)
  c.losses.stft_resolutions = ((256, 64), (512, 128), (1024, 256))
  c.losses.adversarial_warmup_steps = 200
  # Without a phase-sensitive term the short CPU run matched magnitudes only
  # and held-out SI-SDR stayed at ~-40 dB (uncorrelated waveforms).
  c.losses.waveform_weight = 0.1
  c.discriminator = ml_collections.ConfigDict(dict(
      n_ffts=(1024, 512, 256), channels=8, layers=2))
  c.segment_seconds = 0.5


def codec_config(size: str = "debug") -> ml_collections.ConfigDict:
  """The validated config of one codec row of ``config.sizes.CODECS``."""
  if size not in sizes_lib.CODECS:
    raise ValueError(f"unknown codec size {size!r}; choose one of {SIZES}")
  c = _from_row(sizes_lib.CODECS[size])
  if size == "debug":
    _debug_recipe(c)
  validate(c)
  return c


def hop_length(c) -> int:
  return math.prod(c.ratios) * c.downsample


def frame_rate(c) -> float:
  return c.sample_rate / hop_length(c)


def segment_samples(c) -> int:
  """Training crop length, rounded down to whole frames."""
  hop = hop_length(c)
  return max(hop, int(c.segment_seconds * c.sample_rate) // hop * hop)


def validate(c) -> None:
  """Raises ValueError naming the first inconsistent field."""
  def need(ok, field, msg):
    if not ok:
      raise ValueError(f"codec config field '{field}': {msg}")
  need(len(c.channels) == len(c.ratios) + 1, "channels",
       f"needs len(ratios)+1 = {len(c.ratios) + 1} entries, "
       f"got {len(c.channels)}")
  need(all(r >= 1 for r in c.ratios), "ratios", "strides must be >= 1")
  need(c.downsample >= 1, "downsample", "must be >= 1")
  need(c.get("downsample_pad", "zeros") in PAD_MODES, "downsample_pad",
       f"{c.get('downsample_pad')!r} not in {PAD_MODES}")
  need(c.compress >= 1 and all(ch % c.compress == 0 for ch in c.channels),
       "compress", "must divide every channel count")
  t = c.transformer
  if t.enabled:
    need(t.width % t.heads == 0, "transformer.width", "must divide by heads")
    need((t.width // t.heads) % 2 == 0, "transformer.heads",
         "head dim must be even for rotary embeddings")
    need(t.context >= 1, "transformer.context", "must be >= 1")
  q = c.rvq
  need(q.levels >= 1, "rvq.levels", "must be >= 1")
  need(q.codebook_size >= 2, "rvq.codebook_size", "must be >= 2")
  need(0.0 < q.ema_decay < 1.0, "rvq.ema_decay", "must be in (0, 1)")
  need(0.0 <= q.quantizer_dropout <= 1.0, "rvq.quantizer_dropout",
       "is a probability")
  if c.semantic.enabled:
    need(q.levels >= 2, "semantic.enabled",
         "a split quantizer needs rvq.levels >= 2")
    need(c.semantic.weight == 0.0 or c.semantic.target_dim > 0,
         "semantic.target_dim", "must be > 0 when semantic.weight > 0")
  lo = c.losses
  need(len(lo.mel_windows) == len(lo.mel_bins), "losses.mel_bins",
       "needs one entry per mel window")
  need(segment_samples(c) >= max(max(lo.mel_windows),
                                 max(n for n, _ in lo.stft_resolutions),
                                 max(c.discriminator.n_ffts)),
       "segment_seconds", "crop is shorter than the largest STFT window")
  need(c.dtype in ("float32", "bfloat16"), "dtype", "float32 or bfloat16")
  need(c.param_dtype in ("float32", "bfloat16"), "param_dtype",
       "float32 or bfloat16")


def structural_dict(c) -> dict:
  """``c`` as a dict, without the Mimi options that hold their legacy values.

  What a codec checkpoint depends on: a workdir written before the options
  existed records none of them and must still resume.
  """
  d = c.to_dict()
  for key, legacy in LEGACY_DEFAULTS:
    *parents, leaf = key.split(".")
    node = d
    for p in parents:
      node = node.get(p, {})
    if node.get(leaf, legacy) == legacy:
      node.pop(leaf, None)
  return d
