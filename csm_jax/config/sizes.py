"""The one size table: every model shape the project knows, by name.

Config files pick a row (``configs/tiny.py`` -> ``"350M"``); nothing else
hard-codes a width or a depth. ``SIZES`` holds the CSM rows (``csm_1b`` is
Sesame CSM-1B's published shape: llama-1B backbone, llama-100M depth
decoder, 32 codebooks of 2051 ids); ``CODECS`` the neural codec rows that a
CSM row names (``mimi`` is Kyutai Mimi's shape).
"""

from __future__ import annotations

# backbone: (width, depth, heads, kv_heads, mlp)
# decoder:  (width, depth, heads, kv_heads, mlp)
# Text vocab for our own presets is the corpus tokenizer's; csm_1b keeps
# Llama-3's so that its embedding shape matches the reference exactly.
# codec: the row of csm_jax.config.codec whose codes the model predicts
# (spectral: 8 x 256 codes at 25 Hz; base: the plan's 32 x 1024; mimi:
# 32 x 2048).
SIZES: dict[str, dict] = {
    "debug": dict(
        backbone=(256, 4, 4, 2, 768),
        decoder=(128, 2, 4, 2, 384),
        text_vocab=1024, n_codebooks=8, codebook_size=256, codec="spectral",
        seq_len=256, batch_size=8, default_mesh=(-1, 1, 1),
        topology="v5e-4"),
    "350M": dict(
        backbone=(1024, 16, 16, 8, 4096),
        decoder=(768, 4, 12, 4, 3072),
        text_vocab=32000, n_codebooks=32, codebook_size=1024, codec="base",
        seq_len=2048, batch_size=64, default_mesh=(-1, 1, 1),
        topology="v5e-16"),
    "1.5B": dict(
        backbone=(2048, 20, 16, 8, 8192),
        decoder=(1024, 4, 8, 2, 8192),
        text_vocab=32000, n_codebooks=32, codebook_size=1024, codec="base",
        seq_len=2048, batch_size=128, default_mesh=(1, -1, 1),
        topology="v5p-32"),
    "7B": dict(
        backbone=(4096, 32, 32, 8, 14336),
        decoder=(1536, 6, 12, 4, 6144),
        text_vocab=32000, n_codebooks=32, codebook_size=1024, codec="base",
        seq_len=2048, batch_size=256, default_mesh=(1, -1, 2),
        topology="v5p-64"),
    "csm_1b": dict(
        backbone=(2048, 16, 32, 8, 8192),
        decoder=(1024, 4, 8, 2, 8192),
        text_vocab=128256, n_codebooks=32, codebook_size=2048, codec="mimi",
        seq_len=2048, batch_size=64, default_mesh=(1, -1, 1),
        topology="v5p-32",
        # Sesame's backbone is fully causal: text rows see all 2048 rows.
        text_window=2048),
}

# Codec rows: SEANet widths before each downsampling stage and after the
# last one, strides (decoder order; the encoder applies them reversed), the
# extra latent downsample, latent width, bottleneck transformer (layers,
# width, heads, context frames) and residual quantizer (levels, codes,
# codebook dim). "base" is Mimi's shape with the research plan's generic
# quantizer, RVQEncoder(layers=32, codebook_size=1024). "mimi" also computes
# as Kyutai's Mimi does, so its released weights convert exactly
# (csm_jax.interop): the latent downsample pads by repeating the first frame,
# the latent upsample is depthwise, the transformers' GELU is exact. The
# other rows keep zero padding, a dense upsample and the tanh GELU.
CODECS: dict[str, dict] = {
    # 16 kHz, 25 Hz, 8 x 256 codes (1.6 kbps), the spectral family: log-mel
    # frames in, an iSTFT head out, convolutions at the 100 Hz STFT rate
    # (n_fft, hop, mels, width, blocks, kernel, STFT frames per code frame).
    "spectral": dict(
        family="spectral", sample_rate=16_000,
        spectral=(640, 160, 80, 256, 3, 3, 4), latent_dim=128,
        transformer=(2, 128, 4, 50), rvq=(8, 256, 64), semantic=False),
    # 16 kHz, 50 Hz, 8 x 256 codes (3.2 kbps), ~0.6M params, SEANet: the
    # debug CSM's codec until the spectral row replaced it (as a CSM's codec
    # it runs at 25 Hz, downsample 4).
    "debug": dict(
        sample_rate=16_000, channels=(16, 32, 64, 128), ratios=(8, 5, 4),
        downsample=2, latent_dim=64, transformer=(2, 64, 4, 50),
        rvq=(8, 256, 32), semantic=False,
        downsample_pad="zeros", upsample_depthwise=False, exact_gelu=False),
    # 24 kHz, 12.5 Hz. 64 -> 1024 channels then a kernel-3 conv to latent
    # width 512 gives ~79M params with the two transformers, as Mimi.
    "base": dict(
        sample_rate=24_000, channels=(64, 128, 256, 512, 1024),
        ratios=(8, 6, 5, 4), downsample=2, latent_dim=512,
        transformer=(8, 512, 8, 250), rvq=(32, 1024, 256), semantic=True,
        downsample_pad="zeros", upsample_depthwise=False, exact_gelu=False),
    "mimi": dict(
        sample_rate=24_000, channels=(64, 128, 256, 512, 1024),
        ratios=(8, 6, 5, 4), downsample=2, latent_dim=512,
        transformer=(8, 512, 8, 250), rvq=(32, 2048, 256), semantic=True,
        downsample_pad="replicate", upsample_depthwise=True, exact_gelu=True),
}

# Ids above the codec's codes: CSM uses 2048 codes + 3 specials = 2051.
AUDIO_SPECIAL_TOKENS = 3


def names() -> list[str]:
  return sorted(SIZES)


def codec_names() -> list[str]:
  return sorted(CODECS)
