"""Codec training task for the shared trainer: GAN losses, eval metrics and data.

``CodecTask`` has two parameter groups, ``generator`` (the codec) and
``discriminator``. Audio comes from any ``clip_source`` (``len`` +
``__getitem__`` returning float32 mono audio at the codec's rate, or a dict
with "audio" and per-frame "semantic_targets"), cropped at random to the
training segment by a grain pipeline.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.codec import api
from csm_jax.config import codec as cfg
from csm_jax.codec import losses as L
from csm_jax.codec import metrics as M
from csm_jax.codec.model import CodecGAN
from csm_jax.audio.io import load_audio, write_wav
from csm_jax.data.batch import FieldSpec
from csm_jax.data.examples.loader import read_options
from csm_jax.store import models
from csm_jax.training.tasks.base import Task

sg = jax.lax.stop_gradient


# Per-code-frame fields a clip may carry, with the value that pads them past
# the clip's end (-1: no phoneme there, masked out of the loss).
_FRAME_FIELDS = {"semantic_targets": (np.float32, 0.0),
                 "phoneme_targets": (np.int32, -1)}


def _crop(item, start: int, length: int, hop: int):
  """{"audio": (length,), and any per-frame field of ``_FRAME_FIELDS``
  ((length/hop, ...))} from a clip, padded at the end when it is short."""
  audio = item["audio"] if isinstance(item, dict) else item
  audio = np.asarray(audio, np.float32).reshape(-1)
  out = {"audio": np.zeros((length,), np.float32)}
  piece = audio[start:start + length]
  out["audio"][:len(piece)] = piece
  frames, f0 = length // hop, start // hop
  for name, (dtype, fill) in _FRAME_FIELDS.items():
    if not isinstance(item, dict) or item.get(name) is None:
      continue
    values = np.asarray(item[name], dtype)
    out[name] = np.full((frames, *values.shape[1:]), fill, dtype)
    v = values[f0:f0 + frames]
    out[name][:len(v)] = v
  return out


def _clip_len(item) -> int:
  a = item["audio"] if isinstance(item, dict) else item
  return int(np.asarray(a).reshape(-1).shape[0])


def _random_crop(item, rng: np.random.Generator, length: int, hop: int):
  # Hop-aligned starts keep per-frame semantic targets aligned with codes.
  slots = max(0, _clip_len(item) - length) // hop
  return _crop(item, int(rng.integers(0, slots + 1)) * hop, length, hop)


def _center_crop(item, length: int, hop: int):
  return _crop(item, max(0, _clip_len(item) - length) // 2 // hop * hop,
               length, hop)


def _phoneme_loss(logits, targets):
  """Cross-entropy and accuracy of per-frame phoneme classes over the frames
  that have one (targets >= 0)."""
  mask = (targets >= 0).astype(jnp.float32)
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
  picked = jnp.take_along_axis(logp, jnp.maximum(targets, 0)[..., None],
                               -1)[..., 0]
  n = jnp.maximum(mask.sum(), 1.0)
  acc = jnp.sum((jnp.argmax(logits, -1) == targets) * mask) / n
  return -jnp.sum(picked * mask) / n, acc


class AudioFileClips:
  """Clip source over audio files, read lazily with ``load_audio`` (mono,
  resampled to ``sample_rate``); a bad file raises its AudioError."""

  def __init__(self, paths, sample_rate: int):
    self.paths = sorted(paths)
    self.sample_rate = sample_rate

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i: int) -> np.ndarray:
    return load_audio(self.paths[i], self.sample_rate)


class CodecTask(Task):
  """Adversarial training of the streaming codec (see module docstring)."""

  def __init__(self, config, clip_source=None, eval_source=None):
    super().__init__(config)
    c = config.codec if "codec" in config else config
    cfg.validate(c)
    self.c = c
    self.segment = cfg.segment_samples(c)
    self.hop = cfg.hop_length(c)
    self.clip_source = clip_source
    self.eval_source = eval_source
    self._flops: dict[int, float] = {}

  # -- model -------------------------------------------------------------------
  def build_model(self, rngs: nnx.Rngs) -> CodecGAN:
    return CodecGAN(self.c, rngs=rngs)

  def param_groups(self) -> dict[str, Any]:
    return models.param_groups("codec")

  def _semantic_on(self) -> bool:
    return bool(self.c.semantic.enabled and self.c.semantic.weight > 0)

  def _phonetic_on(self) -> bool:
    ph = self.c.get("phonetic")
    return bool(ph is not None and ph.enabled and ph.weight > 0)

  def batch_spec(self) -> dict[str, FieldSpec]:
    spec = {"audio": FieldSpec((self.segment,), np.float32, ("batch", None))}
    if self._semantic_on():
      spec["semantic_targets"] = FieldSpec(
          (self.segment // self.hop, self.c.semantic.target_dim), np.float32,
          ("batch", None, None))
    if self._phonetic_on():
      spec["phoneme_targets"] = FieldSpec((self.segment // self.hop,),
                                          np.int32, ("batch", None))
    return spec

  def _adversarial_on(self) -> bool:
    lo = self.c.losses
    return lo.adversarial_weight > 0 or lo.feature_matching_weight > 0

  # -- losses ------------------------------------------------------------------
  @staticmethod
  def aligned(audio, recon, delay: int):
    """(input, reconstruction) cut to the samples they share: decoded audio
    lags its input by the codec's ``delay``."""
    t = audio.shape[1]
    recon = recon[:, :t].astype(jnp.float32)
    if delay:
      return audio[:, :t - delay], recon[:, delay:t]
    return audio, recon

  def _reconstruction(self, audio, recon):
    lo = self.c.losses
    mel = L.mel_loss(audio, recon, self.c.sample_rate, lo.mel_windows,
                     lo.mel_bins)
    stft = L.stft_loss(audio, recon, lo.stft_resolutions)
    return mel, stft

  def loss_fn(self, model, batch, rng, step):
    c, lo = self.c, self.c.losses
    audio = jnp.asarray(batch["audio"], jnp.float32)
    out = model.codec(audio, rng=rng, train=True)
    audio, recon = self.aligned(audio, out["audio"], model.codec.delay)
    mel, stft = self._reconstruction(audio, recon)
    commit = out["commitment"].mean()
    # Configs saved before the waveform term existed train without it.
    wav_w = lo.get("waveform_weight", 0.0)
    wave = L.waveform_loss(audio, recon)
    gen = (lo.mel_weight * mel + lo.stft_weight * stft + wav_w * wave
           + c.rvq.commitment_weight * commit)
    metrics = {}
    if self._adversarial_on():
      real_logits, real_feats = model.discriminator(audio)
      fake_logits, fake_feats = model.discriminator(recon)
      adv = L.hinge_generator(fake_logits)
      fm = L.feature_matching(sg(real_feats), fake_feats)
      # Traced gate: adversarial terms switch on after warmup without
      # retracing.
      gate = (jnp.asarray(step) >= lo.adversarial_warmup_steps).astype(
          jnp.float32)
      gen = gen + gate * (lo.adversarial_weight * adv
                          + lo.feature_matching_weight * fm)
      # The discriminator sees the reconstruction through stop_gradient, so
      # its loss can never move the generator.
      fake_logits_d, _ = model.discriminator(sg(recon))
      disc = L.hinge_discriminator(real_logits, fake_logits_d)
      metrics.update({"loss/adversarial": adv, "loss/feature_matching": fm,
                      "adversarial_gate": gate})
    else:
      # Without adversarial terms the discriminator is never run.
      disc = jnp.zeros((), jnp.float32)
    if self._phonetic_on():
      ph, acc = _phoneme_loss(out["phonetic_logits"],
                              jnp.asarray(batch["phoneme_targets"]))
      gen = gen + c.phonetic.weight * ph
      metrics.update({"loss/phonetic": ph, "phonetic_accuracy": acc})
    if self._semantic_on():
      pred, tgt = out["semantic"], jnp.asarray(batch["semantic_targets"])
      cos = jnp.sum(pred * tgt, -1) / (
          jnp.linalg.norm(pred, axis=-1) * jnp.linalg.norm(tgt, axis=-1)
          + 1e-6)
      sem = jnp.mean(1.0 - cos)
      gen = gen + c.semantic.weight * sem
      metrics["loss/semantic"] = sem

    metrics.update({
        "loss/mel": mel, "loss/stft": stft, "loss/waveform": wave,
        "loss/commitment": commit,
        "rvq/levels_used": out["levels_used"].mean(),
        **self._rvq_metrics(out)})
    return {"generator": gen, "discriminator": disc}, metrics

  @staticmethod
  def _rvq_metrics(out):
    m = {"rvq/usage_mean": out["usage"].mean(),
         "rvq/perplexity_mean": out["perplexity"].mean()}
    for i in range(out["usage"].shape[0]):
      m[f"rvq/usage_l{i}"] = out["usage"][i]
      m[f"rvq/perplexity_l{i}"] = out["perplexity"][i]
    return m

  def eval_fn(self, model, batch, rng):
    del rng
    audio = jnp.asarray(batch["audio"], jnp.float32)
    out = model.codec(audio, train=False)
    audio, recon = self.aligned(audio, out["audio"], model.codec.delay)
    mel, stft = self._reconstruction(audio, recon)
    lo = self.c.losses
    extra = {}
    if self._phonetic_on() and "phoneme_targets" in batch:
      _, extra["phonetic_accuracy"] = _phoneme_loss(
          out["phonetic_logits"], jnp.asarray(batch["phoneme_targets"]))
    return {**extra,
        "mel_distance": M.mel_distance(audio, recon, self.c.sample_rate,
                                       lo.mel_windows, lo.mel_bins),
        "stft_distance": M.stft_distance(audio, recon, lo.stft_resolutions),
        "si_sdr": M.si_sdr(audio, recon).mean(),
        "loss/mel": mel, "loss/stft": stft,
        "loss/commitment": out["commitment"].mean(),
        **self._rvq_metrics(out)}

  # -- data --------------------------------------------------------------------
  def _source(self, eval_: bool):
    src = self.eval_source if eval_ and self.eval_source is not None else (
        self.clip_source)
    if src is None or len(src) == 0:
      raise ValueError("CodecTask needs a non-empty clip_source (an object "
                       "with __len__ and __getitem__ returning mono float32 "
                       f"audio at {self.c.sample_rate} Hz)")
    return src

  def train_dataset(self, batch_size: int, seed: int):
    crop = functools.partial(_random_crop, length=self.segment, hop=self.hop)
    # Each process reads its own share of the clips, as the CSM pipeline
    # does, so that hosts never train on the same batches.
    return (grain.MapDataset.source(self._source(False))
            [jax.process_index()::jax.process_count()]
            .shuffle(seed=seed).repeat(None)
            .random_map(crop, seed=seed)
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(self.config)))

  def eval_dataset(self, batch_size: int):
    """Centre crops of every eval clip; the last batch wraps around to the
    first clips so that every batch is full (the trainer checks sizes)."""
    src = self._source(True)
    # This process's share of the held-out clips; every process yields the
    # same number of batches, or the collective eval step would hang.
    procs = jax.process_count()
    share = list(range(jax.process_index(), len(src), procs)) or [0]
    n = -(-(-(-len(src) // procs)) // batch_size) * batch_size
    crop = functools.partial(_center_crop, length=self.segment, hop=self.hop)
    return (grain.MapDataset.range(n)
            .map(lambda i: crop(src[share[i % len(share)]]))
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(evaluation=True)))

  # -- accounting --------------------------------------------------------------
  def flops_per_batch(self, batch_size: int) -> float:
    """FLOPs of both groups' forward + backward from XLA's cost analysis of
    the lowered (not compiled) gradient computation. Loops (RVQ levels,
    k-means) count once, which undercounts only the small quantizer part."""
    if batch_size not in self._flops:
      abstract = nnx.eval_shape(lambda: self.build_model(nnx.Rngs(0)))
      graphdef, state = nnx.split(abstract)
      batch = {k: jax.ShapeDtypeStruct((batch_size, *f.shape), f.dtype)
               for k, f in self.batch_spec().items()}

      def grads(state, batch):
        def total(m):
          losses, _ = self.loss_fn(m, batch, jax.random.key(0),
                                   jnp.asarray(2 ** 30))
          return losses["generator"] + losses["discriminator"]
        return nnx.grad(total)(nnx.merge(graphdef, state))

      cost = jax.jit(grads).lower(state, batch).cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      self._flops[batch_size] = float((cost or {}).get("flops", 0.0))
    return self._flops[batch_size]

  def items_per_batch(self, batch_size: int) -> tuple[str, float]:
    return ("audio_seconds", batch_size * self.segment / self.c.sample_rate)

  # -- hooks -------------------------------------------------------------------
  def on_eval(self, model, step: int, writer: Any, workdir: str) -> None:
    """Writes a few eval reconstructions as WAV next to their references."""
    batch = next(iter(self.eval_dataset(4)))
    graphdef, state = nnx.split(model.codec)
    codes = api.encode(graphdef, state, batch["audio"])
    recon = np.asarray(api.decode(graphdef, state, codes))
    out_dir = os.path.join(workdir, "codec_samples", f"step_{step}")
    os.makedirs(out_dir, exist_ok=True)
    sr = self.c.sample_rate
    # In line with the reference: the decoder's output lags by its delay.
    d = model.codec.delay
    for i, (ref, est) in enumerate(zip(batch["audio"], recon)):
      ref, est = ref[:len(ref) - d], est[d:len(ref)]
      write_wav(os.path.join(out_dir, f"{i}_ref.wav"), ref, sr)
      write_wav(os.path.join(out_dir, f"{i}_codec.wav"), est, sr)
      if writer is not None and hasattr(writer, "add_audio"):
        writer.add_audio(f"codec/{i}", est[None], step, sample_rate=sr)
