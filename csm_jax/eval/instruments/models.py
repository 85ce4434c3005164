"""The instruments' networks: one convolutional trunk, two kinds of head.

The trunk stacks ``stack`` 10 ms log-mel frames into one (4: 25 frames per
second), projects them to ``width`` and applies residual blocks of a
dilated temporal convolution and an MLP, each after a LayerNorm. Dense
convolutions and matmuls because XLA runs them fast on two CPU cores; the
dilations (1, 2, 4, 8 at 25 Hz) reach about +-0.5 to 1.2 s, a word or two.
Padded frames are zeroed before every convolution and never update a
recurrent state, so an utterance gives the same output however much padding
its batch adds.

``Recognizer`` adds a BiGRU (context in both directions for spelling; on
the default corpus three blocks + BiGRU and six blocks without it reached
the same CER for the same compute) and a CTC head emitting ``upsample``
frames per trunk frame, so
the output runs at 50 Hz, enough for the fastest eSpeak speech (~26
characters per second plus the blanks CTC needs between repeated letters).
``UtteranceClassifier`` pools the trunk (masked mean and standard deviation
over time) into an embedding with either a cosine head (the speaker
encoder: additive-margin softmax, so that cosine similarity of embeddings is
what training separates) or a plain linear head (the emotion classifier).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.eval.instruments import ctc
from csm_jax.eval.instruments import frontend


class _Block(nnx.Module):
  def __init__(self, width: int, kernel: int, dilation: int, mlp: int,
               rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(width, rngs=rngs)
    self.conv = nnx.Conv(width, width, (kernel,), kernel_dilation=(dilation,),
                         padding="SAME", rngs=rngs)
    self.norm2 = nnx.LayerNorm(width, rngs=rngs)
    self.up = nnx.Linear(width, mlp, rngs=rngs)
    self.down = nnx.Linear(mlp, width, rngs=rngs)

  def __call__(self, x, mask):
    m = mask[..., None].astype(x.dtype)
    x = x + jax.nn.gelu(self.conv(self.norm1(x) * m))
    return x + self.down(jax.nn.gelu(self.up(self.norm2(x))))


class Trunk(nnx.Module):
  """(B, T, N_MELS) log-mel + (B, T) validity -> (B, T/stack, width) + mask."""

  def __init__(self, ic, rngs: nnx.Rngs):
    self.stack = int(ic.stack)
    # Per-band statistics of the training features: fixed, not trained.
    # Tuples are static graph data (they come from, and are saved with, the
    # instrument's config).
    self.mean = tuple(float(v) for v in ic.norm_mean)
    self.std = tuple(max(float(v), 1e-3) for v in ic.norm_std)
    self.proj = nnx.Linear(frontend.N_MELS * self.stack, ic.width, rngs=rngs)
    self.blocks = nnx.List([_Block(ic.width, ic.kernel, d, ic.width * ic.mlp_ratio,
                                   rngs) for d in ic.dilations])
    self.norm = nnx.LayerNorm(ic.width, rngs=rngs)

  def __call__(self, feats, mask):
    b, t, f = feats.shape
    pad = (-t) % self.stack
    x = ((feats.astype(jnp.float32) - np.asarray(self.mean, np.float32))
         / np.asarray(self.std, np.float32))
    x = x * mask[..., None]
    if pad:
      x = jnp.pad(x, ((0, 0), (0, pad), (0, 0)))
      mask = jnp.pad(mask, ((0, 0), (0, pad)))
    x = x.reshape(b, (t + pad) // self.stack, self.stack * f)
    mask = mask[:, ::self.stack]
    x = self.proj(x)
    for block in self.blocks:
      x = block(x, mask)
    return self.norm(x), mask


class BiGRU(nnx.Module):
  """A bidirectional GRU layer added residually: (B, T, width) -> same.

  A frame outside ``mask`` leaves the state unchanged, so the backward pass
  effectively starts at each utterance's last valid frame and padding never
  changes a valid frame's output.
  """

  def __init__(self, width: int, hidden: int, rngs: nnx.Rngs):
    self.hidden = hidden
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.inp = nnx.Linear(width, 6 * hidden, rngs=rngs)
    init = nnx.initializers.orthogonal()
    self.rec_f = nnx.Param(init(rngs.params(), (hidden, 3 * hidden)))
    self.rec_b = nnx.Param(init(rngs.params(), (hidden, 3 * hidden)))
    self.out = nnx.Linear(2 * hidden, width, rngs=rngs)

  def _run(self, xi, mask, rec, reverse: bool):
    h_dim = self.hidden

    def step(h, inp):
      x, m = inp
      hh = h @ rec
      r = jax.nn.sigmoid(x[:, :h_dim] + hh[:, :h_dim])
      z = jax.nn.sigmoid(x[:, h_dim:2 * h_dim] + hh[:, h_dim:2 * h_dim])
      n = jnp.tanh(x[:, 2 * h_dim:] + r * hh[:, 2 * h_dim:])
      h = jnp.where(m[:, None], (1 - z) * n + z * h, h)
      return h, h

    h0 = jnp.zeros((xi.shape[0], h_dim), xi.dtype)
    _, hs = jax.lax.scan(step, h0, (xi.swapaxes(0, 1), mask.swapaxes(0, 1)),
                         reverse=reverse)
    return hs.swapaxes(0, 1)

  def __call__(self, x, mask):
    xi = self.inp(self.norm(x))
    h = 3 * self.hidden
    fwd = self._run(xi[..., :h], mask, self.rec_f[...], False)
    bwd = self._run(xi[..., h:], mask, self.rec_b[...], True)
    return x + self.out(jnp.concatenate([fwd, bwd], axis=-1))


def frames_out(n_frames: int, stack: int) -> int:
  """Trunk frames for ``n_frames`` log-mel frames."""
  return -(-int(n_frames) // stack)


class Recognizer(nnx.Module):
  """Per-frame CTC logits over ``ctc.ALPHABET`` (blank = ``ctc.BLANK``).

  With ``upsample`` > 1 every trunk frame emits that many CTC frames: the
  trunk can then run at a lower frame rate (cheaper) while CTC keeps the
  output rate fast speech needs.
  """

  def __init__(self, ic, rngs: nnx.Rngs):
    self.trunk = Trunk(ic, rngs)
    self.upsample = int(ic.upsample)
    self.rnn = nnx.List([BiGRU(ic.width, ic.rnn_hidden, rngs)
                         for _ in range(int(ic.rnn_layers))])
    self.norm = nnx.LayerNorm(ic.width, rngs=rngs)
    self.head = nnx.Linear(ic.width, ctc.VOCAB * self.upsample, rngs=rngs)

  def __call__(self, feats, mask):
    h, mask = self.trunk(feats, mask)
    for layer in self.rnn:
      h = layer(h, mask)
    if len(self.rnn):
      h = self.norm(h)
    b, t, _ = h.shape
    logits = self.head(h).reshape(b, t * self.upsample, ctc.VOCAB)
    return logits, jnp.repeat(mask, self.upsample, axis=1)

  def frame_seconds(self) -> float:
    return self.trunk.stack / self.upsample / frontend.FRAME_RATE


def masked_stats(h, mask):
  """Mean and standard deviation over valid frames: (B, 2 * width)."""
  m = mask[..., None].astype(h.dtype)
  n = jnp.maximum(m.sum(1), 1.0)
  mean = (h * m).sum(1) / n
  var = (jnp.square(h - mean[:, None]) * m).sum(1) / n
  return jnp.concatenate([mean, jnp.sqrt(var + 1e-5)], axis=-1)


class UtteranceClassifier(nnx.Module):
  """Utterance embedding (``embed``) and class logits (``logits``)."""

  def __init__(self, ic, rngs: nnx.Rngs):
    self.trunk = Trunk(ic, rngs)
    self.pool = nnx.Linear(2 * ic.width, ic.embed_dim, rngs=rngs)
    self.cosine = bool(ic.cosine_head)
    self.head = nnx.Linear(ic.embed_dim, ic.n_classes, use_bias=not self.cosine,
                           rngs=rngs)

  def embed(self, feats, mask):
    h, mask = self.trunk(feats, mask)
    return self.pool(masked_stats(h, mask))

  def logits(self, emb):
    """Class scores; with the cosine head, cosines in [-1, 1]."""
    if self.cosine:
      e = emb / jnp.maximum(jnp.linalg.norm(emb, axis=-1, keepdims=True), 1e-6)
      w = self.head.kernel[...]
      w = w / jnp.maximum(jnp.linalg.norm(w, axis=0, keepdims=True), 1e-6)
      return e @ w
    return self.head(jax.nn.gelu(emb))

  def __call__(self, feats, mask):
    return self.logits(self.embed(feats, mask))
