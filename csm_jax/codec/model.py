"""The codec model: encoder -> transformer -> downsample -> RVQ -> mirror.

The encoder and decoder are SEANet's (convolutions on samples) or, for the
spectral family, a log-mel encoder and an iSTFT decoder
(``codec.spectral_net``). ``Codec`` maps (B, T) audio at ``sample_rate`` to (B, frames, levels) int32
codes and back; every stage streams, so ``encode_step`` / ``decode_step`` on
hop-aligned chunks equal the offline ``encode`` / ``decode``. ``CodecGAN``
pairs it with the discriminator for training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from csm_jax.config import codec as cfg
from csm_jax.codec.conv import CausalConv1d, CausalConvTranspose1d, Linear
from csm_jax.codec.discriminator import MultiScaleSTFTDiscriminator
from csm_jax.codec.rvq import SplitQuantizer
from csm_jax.codec.seanet import SEANetDecoder, SEANetEncoder
from csm_jax.codec.spectral_net import ISTFTDecoder, MelEncoder
from csm_jax.codec.transformer import Transformer


class _Squeeze(nnx.Module):
  """(B, T) <-> (B, T, 1) adapter so the audio ends of the chains stream too."""

  def __init__(self, to_channels: bool):
    self.to_channels = to_channels

  def init_state(self, batch):
    del batch
    return ()

  def step(self, x, state):
    # Audio leaves the codec as float32 whatever the compute dtype.
    return (x[..., None] if self.to_channels
            else x[..., 0].astype(jnp.float32)), state


class Codec(nnx.Module):
  """Causal streaming neural audio codec (Mimi-shaped at size "mimi")."""

  def __init__(self, c, *, rngs: nnx.Rngs):
    cfg.validate(c)
    dtype, pdt = jnp.dtype(c.dtype), jnp.dtype(c.param_dtype)
    kw = dict(rngs=rngs, dtype=dtype, param_dtype=pdt)
    d = c.latent_dim
    spectral = cfg.family(c) == "spectral"
    # The spectral encoder reaches the code frame rate itself.
    ds = 1 if spectral else c.downsample
    self.encoder = (MelEncoder if spectral else SEANetEncoder)(c, **kw)
    self.decoder = (ISTFTDecoder if spectral else SEANetDecoder)(c, **kw)
    # Samples by which decoded audio lags the audio that was encoded.
    self.delay = self.decoder.delay if spectral else 0
    on = c.transformer.enabled
    self.enc_transformer = Transformer(d, c.transformer, **kw) if on else None
    self.dec_transformer = Transformer(d, c.transformer, **kw) if on else None
    # Codec directories saved before these options existed lack them; their
    # defaults are the behaviour those codecs were trained with.
    self.downsample = (CausalConv1d(d, d, 2 * ds, stride=ds,
                                    pad_mode=cfg.option(c, "downsample_pad"),
                                    **kw)
                       if ds > 1 else None)
    self.upsample = (CausalConvTranspose1d(
        d, d, 2 * ds, stride=ds,
        depthwise=bool(cfg.option(c, "upsample_depthwise")), **kw)
                     if ds > 1 else None)
    self.quantizer = SplitQuantizer(d, c, **kw)
    sem = c.semantic
    self.semantic_head = (Linear(d, sem.target_dim, axes=("embed", None),
                                 **kw)
                          if sem.enabled and sem.weight > 0 else None)
    ph = c.get("phonetic")
    self.phonetic_head = (Linear(c.rvq.codebook_dim, ph.classes,
                                 axes=("code_dim", None), **kw)
                          if ph is not None and ph.enabled else None)
    self.sample_rate = c.sample_rate
    self.hop = cfg.hop_length(c)
    self.levels = c.rvq.levels
    self.codebook_size = c.rvq.codebook_size
    self.quantizer_dropout = c.rvq.quantizer_dropout
    self.quantize_rate = float(cfg.option(c.rvq, "rvq.quantize_rate"))

  # -- streaming chains --------------------------------------------------------
  def _enc_chain(self):
    mods = [_Squeeze(True), self.encoder, self.enc_transformer,
            self.downsample]
    return [m for m in mods if m is not None]

  def _dec_chain(self):
    mods = [self.upsample, self.dec_transformer, self.decoder,
            _Squeeze(False)]
    return [m for m in mods if m is not None]

  @staticmethod
  def _run(chain, x, states):
    new = []
    for m, s in zip(chain, states):
      x, s = m.step(x, s)
      new.append(s)
    return x, new

  def init_encoder_state(self, batch: int):
    return [m.init_state(batch) for m in self._enc_chain()]

  def init_decoder_state(self, batch: int):
    return [m.init_state(batch) for m in self._dec_chain()]

  def encode_latent_step(self, audio, state):
    """(B, T) with T a multiple of hop -> (B, T / hop, latent_dim)."""
    if audio.shape[1] % self.hop:
      raise ValueError(f"chunk of {audio.shape[1]} samples is not a multiple "
                       f"of the codec hop {self.hop}")
    return self._run(self._enc_chain(), audio, state)

  def decode_latent_step(self, z, state):
    """(B, F, latent_dim) -> (B, F * hop) audio."""
    return self._run(self._dec_chain(), z, state)

  def encode_step(self, audio, state, n_levels=None):
    z, state = self.encode_latent_step(audio, state)
    return self.quantizer.encode(z, n_levels), state

  def decode_step(self, codes, state):
    return self.decode_latent_step(self.quantizer.decode(codes), state)

  # -- offline -----------------------------------------------------------------
  def pad(self, audio):
    """Right-pads (B, T) with zeros to a whole number of frames."""
    extra = (-audio.shape[1]) % self.hop
    return jnp.pad(audio, ((0, 0), (0, extra))) if extra else audio

  def encode(self, audio, n_levels: int | None = None):
    """(B, T) float audio -> (B, ceil(T / hop), n_levels) int32 codes."""
    audio = self.pad(audio)
    return self.encode_step(audio, self.init_encoder_state(audio.shape[0]),
                            n_levels)[0]

  def decode(self, codes, n_levels: int | None = None):
    """(B, F, >= n_levels) codes -> (B, F * hop) audio from the first
    n_levels levels (all given levels by default)."""
    if n_levels is not None:
      codes = codes[..., :n_levels]
    return self.decode_step(codes, self.init_decoder_state(codes.shape[0]))[0]

  def level_mask(self, rng, batch: int):
    """Quantizer dropout: with probability p an example keeps only its first
    n ~ U{1..levels} levels, otherwise all of them."""
    k1, k2 = jax.random.split(rng)
    drop = jax.random.bernoulli(k1, self.quantizer_dropout, (batch,))
    n = jnp.where(drop, jax.random.randint(k2, (batch,), 1, self.levels + 1),
                  self.levels)
    return (jnp.arange(self.levels)[None, :] < n[:, None]).astype(jnp.float32)

  def __call__(self, audio, *, rng=None, train: bool = False):
    """Reconstruction pass. ``train`` applies quantizer dropout and updates the
    codebooks (needs ``rng``). Returns a dict with "audio" (B, T'), "codes",
    "commitment"/"usage"/"perplexity" per level, "levels_used" (B,) and
    "semantic" (B, F, target_dim) when a semantic head exists and
    "phonetic_logits" (B, F, classes) when a phonetic head does."""
    audio = self.pad(audio)
    b = audio.shape[0]
    z, _ = self.encode_latent_step(audio, self.init_encoder_state(b))
    bypass = None
    if train:
      if rng is None:
        raise ValueError("training pass needs an rng")
      k_drop, k_q, k_pass = jax.random.split(rng, 3)
      mask = self.level_mask(k_drop, b)
      if self.quantize_rate < 1.0:
        # Mimi's quantization rate: the rest of the examples train the
        # encoder and decoder through the unquantized latent.
        bypass = jax.random.bernoulli(k_pass, 1.0 - self.quantize_rate, (b,))
    else:
      k_q, mask = None, None
    zq, codes, aux = self.quantizer(z, mask, rng=k_q, update=train,
                                    bypass=bypass)
    recon, _ = self.decode_latent_step(zq, self.init_decoder_state(b))
    out = {"audio": recon, "codes": codes, "commitment": aux["commitment"],
           "usage": aux["usage"], "perplexity": aux["perplexity"],
           "levels_used": (mask.sum(-1) if mask is not None
                           else jnp.full((b,), float(self.levels)))}
    if self.semantic_head is not None:
      out["semantic"] = self.semantic_head(aux["semantic"])
    if self.phonetic_head is not None:
      out["phonetic_logits"] = self.phonetic_head(aux["first_level"])
    return out


class CodecGAN(nnx.Module):
  """Training container: ``codec`` (generator group) + ``discriminator``."""

  def __init__(self, c, *, rngs: nnx.Rngs):
    self.codec = Codec(c, rngs=rngs)
    self.discriminator = MultiScaleSTFTDiscriminator(
        c, rngs=rngs, dtype=jnp.dtype(c.dtype),
        param_dtype=jnp.dtype(c.param_dtype))


def count_params(module: nnx.Module) -> int:
  state = nnx.state(module, nnx.Param)
  return int(sum(x.size for x in jax.tree.leaves(state)))


def init_codec(c, seed: int = 0) -> Codec:
  """Builds a randomly initialised Codec in one jitted call (eager
  construction compiles every initializer separately and is slow)."""
  def make():
    return Codec(c, rngs=nnx.Rngs(params=seed))
  graphdef = nnx.split(nnx.eval_shape(make))[0]
  state = jax.jit(lambda: nnx.state(make()))()
  return nnx.merge(graphdef, state)
