"""Config and validation of the neural audio codec (SEANet + transformer + RVQ).

``codec_config(name)`` builds the codec config of one row of
``config.sizes.CODECS`` (shapes) with its training recipe (losses,
discriminator, crop length): ``debug`` trains on two CPU cores in minutes;
``mimi`` has the shape of Kyutai's Mimi (24 kHz, 12.5 Hz frames, 32 x 2048
split RVQ) and computes as Mimi does (replicate-padded downsample, depthwise
upsample, exact GELU), so Mimi's weights convert into it exactly; ``base``
is that shape with the research plan's generic quantizer
(``RVQEncoder(layers=32, codebook_size=1024)``) and our own layers.

Two families share the transformer, the quantizer and the losses
(``family``): ``seanet`` (the three rows above: convolutions on raw samples)
and ``spectral`` (log-mel frames in, an iSTFT head out; its fields live in
``spectral``). A config holding a field of the other family fails
validation naming that field.
"""

from __future__ import annotations

import math

import ml_collections

from csm_jax.config import sizes as sizes_lib

SIZES = tuple(sizes_lib.codec_names())
PAD_MODES = ("zeros", "replicate")
FAMILIES = ("seanet", "spectral")
# Conv blocks of the spectral family's ends: SEANet's dilated residual unit
# (codecs saved before the field existed) or Vocos's ConvNeXt block.
SPECTRAL_BLOCKS = ("residual", "convnext")
# Fields only the SEANet family has; the spectral family's are under
# ``spectral`` (and ``family`` itself, which SEANet configs saved before it
# existed lack).
SEANET_FIELDS = ("channels", "ratios", "downsample", "downsample_pad",
                 "upsample_depthwise", "n_residual", "kernel_size",
                 "last_kernel_size", "residual_kernel_size", "dilation_base",
                 "compress")

# Options added after codecs were first saved (those that make the codec
# compute as Mimi does, k-means initialisation), with the values that codecs
# saved before the options existed were built with.
LEGACY_DEFAULTS = (("downsample_pad", "zeros"), ("upsample_depthwise", False),
                   ("transformer.exact_gelu", False),
                   ("rvq.kmeans_init", True), ("rvq.kmeans_init_vectors", 0),
                   ("rvq.quantize_rate", 1.0), ("spectral.block", "residual"))
_LEGACY = dict(LEGACY_DEFAULTS)


def option(section, key: str):
  """The value of ``key``, a ``LEGACY_DEFAULTS`` path, read from ``section``
  (the config node holding its last part): the value codecs saved before
  the option existed were built with where ``section`` lacks it."""
  return section.get(key.rsplit(".", 1)[-1], _LEGACY[key])


def _rvq(levels, codebook_size, codebook_dim, dead_code_threshold=0.1,
         kmeans_init_vectors=0, quantize_rate=1.0):
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
      # Codebooks start as k-means centroids of the first training batch's
      # vectors; off, they start as random normal vectors (the ablation).
      kmeans_init=True,
      # 0: k-means on the first batch's vectors; N: on the first N input
      # vectors, gathered over the first steps (rvq.ResidualVQ).
      kmeans_init_vectors=kmeans_init_vectors,
      quantizer_dropout=0.5,
      # Share of training examples whose latent is quantized; the rest pass
      # it on unquantized (Mimi trains at 0.5). 1.0: always quantized.
      quantize_rate=quantize_rate,
      commitment_weight=1.0,
  ))


def _losses(mel_windows, mel_bins, stft_resolutions, *, adversarial,
            feature_matching, warmup):
  return ml_collections.ConfigDict(dict(
      mel_windows=mel_windows, mel_bins=mel_bins,
      stft_resolutions=stft_resolutions, mel_weight=1.0, stft_weight=1.0,
      # Negative SI-SDR in dB (losses.waveform_loss): the only term that
      # sees phase. Mimi trains without it; 0.0 keeps that recipe.
      waveform_weight=0.0,
      adversarial_weight=adversarial,
      feature_matching_weight=feature_matching,
      adversarial_warmup_steps=warmup))


def _discriminator(n_ffts, channels, layers):
  return ml_collections.ConfigDict(dict(n_ffts=n_ffts, channels=channels,
                                        layers=layers))


# Phoneme classes of the embedded corpus (data.phonemes.INVENTORY; the
# data layer checks that its inventory fits).
PHONEME_CLASSES = 67


def _phonetic(enabled: bool):
  return ml_collections.ConfigDict(dict(
      # A head on the first level's quantized vector classifies the phoneme
      # spoken in each code frame (the corpus's recorded phonemes, never the
      # evaluation recognizer), so level 1 carries what was said.
      enabled=enabled, weight=0.1 if enabled else 0.0,
      classes=PHONEME_CLASSES if enabled else 0))


def _spectral_from_row(row: dict) -> ml_collections.ConfigDict:
  """A spectral-family config of one size-table row, with its CPU recipe."""
  n_fft, hop, mels, width, blocks, kernel, per_code = row["spectral"]
  layers, twidth, heads, context = row["transformer"]
  levels, codes, dim = row["rvq"]
  return ml_collections.ConfigDict(dict(
      family="spectral",
      sample_rate=row["sample_rate"],
      spectral=ml_collections.ConfigDict(dict(
          n_fft=n_fft, hop=hop, n_mels=mels, width=width, blocks=blocks,
          kernel=kernel, dilation_base=2, frames_per_code=per_code,
          block="residual")),
      latent_dim=row["latent_dim"],
      transformer=ml_collections.ConfigDict(dict(
          enabled=True, layers=layers, width=twidth, heads=heads, mlp_ratio=4,
          context=context, rope_base=10_000.0, layer_scale=0.01,
          exact_gelu=False)),
      # Half the examples skip quantization (as Mimi): the encoder and
      # decoder learn the autoencoder on clean gradients, where the codec
      # was losing to the k-means floor (docs/codec.md).
      rvq=_rvq(levels, codes, dim, kmeans_init_vectors=4096,
               quantize_rate=0.5),
      semantic=ml_collections.ConfigDict(dict(enabled=False, target_dim=0,
                                              weight=0.0)),
      phonetic=_phonetic(True),
      # Adversarial terms are an optional fine-tune for this family; 0.0
      # keeps the discriminator out of the step entirely.
      losses=_losses((256, 512, 1024), (40, 80, 80),
                     ((256, 64), (512, 128), (1024, 256)), adversarial=0.0,
                     feature_matching=0.0, warmup=0),
      discriminator=_discriminator((1024, 512, 256), 8, 2),
      segment_seconds=1.0,
      dtype="float32",
      param_dtype="float32",
  ))


def _from_row(row: dict) -> ml_collections.ConfigDict:
  """A codec config with the shapes of one size-table row and the full-size
  recipe (losses, discriminator, crop); ``_debug_recipe`` scales it down."""
  if row.get("family", "seanet") == "spectral":
    return _spectral_from_row(row)
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
      losses=_losses((64, 128, 256, 512, 1024, 2048), (16, 32, 64, 64, 64, 64),
                     ((512, 128), (1024, 256), (2048, 512)), adversarial=1.0,
                     feature_matching=3.0, warmup=5_000),
      discriminator=_discriminator((2048, 1024, 512, 256, 128), 32, 3),
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


def family(c) -> str:
  """"seanet" or "spectral" (configs saved before families were SEANet)."""
  return c.get("family", "seanet")


def hop_length(c) -> int:
  if family(c) == "spectral":
    return c.spectral.hop * c.spectral.frames_per_code
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
  fam = family(c)
  need(fam in FAMILIES, "family", f"{fam!r} not in {FAMILIES}")
  if fam == "spectral":
    for f in SEANET_FIELDS:
      need(f not in c, f, "is a field of the seanet codec family; this "
           "config's family is spectral")
    _validate_spectral(c, need)
  else:
    need("spectral" not in c, "spectral", "holds the spectral family's "
         "fields; this config's family is seanet")
    _validate_seanet(c, need)
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
  need(0.0 < option(q, "rvq.quantize_rate") <= 1.0, "rvq.quantize_rate",
       "is a share of examples in (0, 1]")
  if c.semantic.enabled:
    need(q.levels >= 2, "semantic.enabled",
         "a split quantizer needs rvq.levels >= 2")
    need(c.semantic.weight == 0.0 or c.semantic.target_dim > 0,
         "semantic.target_dim", "must be > 0 when semantic.weight > 0")
  ph = c.get("phonetic")
  if ph is not None and ph.enabled:
    need(ph.classes >= 2, "phonetic.classes", "needs >= 2 phoneme classes")
    need(ph.weight >= 0, "phonetic.weight", "must be >= 0")
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


def _validate_spectral(c, need) -> None:
  s = c.spectral
  need(s.hop >= 1 and s.n_fft % s.hop == 0, "spectral.hop",
       f"must divide n_fft {s.n_fft}")
  need(s.n_fft // s.hop >= 3, "spectral.n_fft",
       "needs at least 3 hops per window (a constant squared-Hann overlap)")
  need(s.n_mels >= 1, "spectral.n_mels", "must be >= 1")
  need(s.width % 2 == 0, "spectral.width", "must be even")
  need(s.frames_per_code >= 1, "spectral.frames_per_code", "must be >= 1")
  need(s.blocks >= 0, "spectral.blocks", "must be >= 0")
  need(option(s, "spectral.block") in SPECTRAL_BLOCKS, "spectral.block",
       f"must be one of {SPECTRAL_BLOCKS}")


def _validate_seanet(c, need) -> None:
  need(len(c.channels) == len(c.ratios) + 1, "channels",
       f"needs len(ratios)+1 = {len(c.ratios) + 1} entries, "
       f"got {len(c.channels)}")
  need(all(r >= 1 for r in c.ratios), "ratios", "strides must be >= 1")
  need(c.downsample >= 1, "downsample", "must be >= 1")
  pad = option(c, "downsample_pad")
  need(pad in PAD_MODES, "downsample_pad", f"{pad!r} not in {PAD_MODES}")
  need(c.compress >= 1 and all(ch % c.compress == 0 for ch in c.channels),
       "compress", "must divide every channel count")


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
