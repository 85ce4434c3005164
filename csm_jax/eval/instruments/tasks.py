"""The instruments as tasks of the shared trainer.

``RecognizerTask`` trains the CTC recognizer on windows packed with whole
turns (audio frames end to end, transcripts joined by a space), because CTC
needs a turn's complete transcript and turns run from 0.3 to 26 s: packing
keeps windows full where padding each turn to the longest would waste most
of every batch. ``UtteranceTask`` trains the speaker encoder or the emotion
classifier on random crops of turns with the turn's label. Both augment
every example (``augment``) and evaluate on the validation split without
augmentation; the trainer owns the loop, optimizer and checkpoints.
"""

from __future__ import annotations

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax

from csm_jax.data.batch import FieldSpec
from csm_jax.data.examples.loader import read_options
from csm_jax.eval.instruments import augment as aug_lib
from csm_jax.eval.instruments import ctc
from csm_jax.eval.instruments import frontend
from csm_jax.eval.instruments import models
from csm_jax.eval.instruments.corpus import FeatureStore
from csm_jax.training.tasks.base import Task

# Enough for any epoch count the recipes use: the iterator never runs dry.
_EXAMPLES = 1 << 24


def build_model(ic, rngs):
  """The network of an instrument config section (``config.instrument``)."""
  if ic.kind == "recognizer":
    return models.Recognizer(ic.net, rngs)
  return models.UtteranceClassifier(ic.net, rngs)


def _augment(ic) -> aug_lib.Augment:
  return aug_lib.Augment(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                            for k, v in ic.augment.to_dict().items()})


def _eval_indices(n_items: int, batch_size: int) -> np.ndarray:
  """Every item once, wrapped round to fill the last batch (the trainer
  needs full batches). This process's share when there are several."""
  share = np.arange(jax.process_index(), n_items, jax.process_count())
  if share.size == 0:
    share = np.arange(min(1, n_items))
  total = -(-share.size // batch_size) * batch_size
  return share[np.arange(total) % share.size]


class _InstrumentTask(Task):
  """What the three instruments share: model, stores, augmentation."""

  def __init__(self, config, train_store: FeatureStore,
               eval_store: FeatureStore):
    super().__init__(config)
    self.ic = config.instrument
    self.train_store, self.eval_store = train_store, eval_store
    self.augment = _augment(self.ic)

  def build_model(self, rngs):
    return build_model(self.ic, rngs)

  def items_per_batch(self, batch_size: int) -> tuple[str, float]:
    frames = self.batch_spec()["feats"].shape[0]
    return ("audio_seconds", batch_size * frames / frontend.FRAME_RATE)


class RecognizerTask(_InstrumentTask):
  """CTC over characters on packed windows of whole turns."""

  def __init__(self, config, train_store, eval_store):
    super().__init__(config, train_store, eval_store)
    d = self.ic.data
    self.window, self.max_label = int(d.window_frames), int(d.max_label)
    self.labels = {id(s): [ctc.encode(t) for t in s.texts]
                   for s in (train_store, eval_store)}
    lengths = train_store.lengths()
    # Turns that fit a window at the fastest tempo the augmentation draws.
    slack = self.augment.tempo[0]
    self.fits = np.asarray([i for i, (n, y) in enumerate(
        zip(lengths, self.labels[id(train_store)]))
        if n / slack <= self.window and 0 < len(y) <= self.max_label])
    if self.fits.size == 0:
      raise ValueError(f"no training turn fits a window of {self.window} "
                       f"frames and {self.max_label} characters")

  def batch_spec(self):
    w, n = self.window, self.max_label
    return {"feats": FieldSpec((w, frontend.N_MELS), np.float32,
                               ("batch", None, None)),
            "mask": FieldSpec((w,), np.bool_, ("batch", None)),
            "labels": FieldSpec((n,), np.int32, ("batch", None), 0, ctc.VOCAB),
            "label_mask": FieldSpec((n,), np.bool_, ("batch", None))}

  def _empty(self):
    return {"feats": np.zeros((self.window, frontend.N_MELS), np.float32),
            "mask": np.zeros((self.window,), np.bool_),
            "labels": np.zeros((self.max_label,), np.int32),
            "label_mask": np.zeros((self.max_label,), np.bool_)}

  def pack(self, rng: np.random.Generator, attempts: int = 12):
    """A window of random training turns, augmented, end to end."""
    out, t, labels = self._empty(), 0, []
    store, ys = self.train_store, self.labels[id(self.train_store)]
    for _ in range(attempts):
      i = int(self.fits[rng.integers(self.fits.size)])
      y = ys[i]
      sep = 1 if labels else 0
      room = self.window - t
      if (store.offsets[i + 1] - store.offsets[i]) * 0.85 > room or (
          len(labels) + sep + len(y) > self.max_label):
        continue
      x = self.augment(store.frames(i), rng)
      if len(x) > room:
        continue
      out["feats"][t:t + len(x)] = x
      out["mask"][t:t + len(x)] = True
      t += len(x)
      labels += ([ctc.ALPHABET.index(" ")] if sep else []) + y.tolist()
    out["labels"][:len(labels)] = labels
    out["label_mask"][:len(labels)] = True
    return out

  def single(self, store: FeatureStore, i: int):
    """Turn ``i`` alone, unaugmented, cut to the window if longer (its
    labels then overrun and the example only counts towards the loss)."""
    out = self._empty()
    x = store.frames(i)[:self.window]
    y = self.labels[id(store)][i][:self.max_label]
    out["feats"][:len(x)], out["mask"][:len(x)] = x, True
    out["labels"][:len(y)], out["label_mask"][:len(y)] = y, True
    return out

  def loss_fn(self, model, batch, rng, step):
    del rng, step
    logits, mask = model(batch["feats"], batch["mask"])
    per_seq = optax.ctc_loss(
        logits.astype(jnp.float32), 1.0 - mask.astype(jnp.float32),
        batch["labels"], 1.0 - batch["label_mask"].astype(jnp.float32),
        blank_id=ctc.BLANK)
    chars = jnp.maximum(batch["label_mask"].sum(), 1).astype(jnp.float32)
    loss = per_seq.sum() / chars
    blank = (jnp.argmax(logits, -1) == ctc.BLANK) & mask
    return {"model": loss}, {
        "ctc_per_char": loss,
        "blank_share": blank.sum() / jnp.maximum(mask.sum(), 1)}

  def batch_weight(self, batch):
    return batch["label_mask"].sum().astype(jnp.float32)

  def train_dataset(self, batch_size: int, seed: int):
    return (grain.MapDataset.range(_EXAMPLES)
            [jax.process_index()::jax.process_count()]
            .random_map(lambda _, rng: self.pack(rng), seed=seed)
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(self.config)))

  def eval_dataset(self, batch_size: int):
    # Turns too long for a window would be scored against labels they do
    # not hold; the validity measurement reads them whole instead.
    ys = self.labels[id(self.eval_store)]
    fit = np.asarray([i for i, (n, y) in enumerate(zip(
        self.eval_store.lengths(), ys)) if n <= self.window
                      and len(y) <= self.max_label] or [0])
    idx = fit[_eval_indices(fit.size, batch_size)]
    return (grain.MapDataset.source(idx)
            .map(lambda i: self.single(self.eval_store, int(i)))
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(evaluation=True)))


class UtteranceTask(_InstrumentTask):
  """Speaker or emotion classification of random crops of turns."""

  def __init__(self, config, train_store, eval_store):
    super().__init__(config, train_store, eval_store)
    d = self.ic.data
    self.crop = int(d.crop_frames)
    self.field = d.label_field
    self.train_labels = self._labels(train_store)
    self.eval_labels = self._labels(eval_store)
    self.usable = np.flatnonzero(self.train_labels >= 0)
    if self.usable.size == 0:
      raise ValueError(f"no training turn has a {self.field} label")

  def _labels(self, store) -> np.ndarray:
    return {"speaker": store.speakers, "emotion": store.emotions}[self.field]

  def batch_spec(self):
    return {"feats": FieldSpec((self.crop, frontend.N_MELS), np.float32,
                               ("batch", None, None)),
            "mask": FieldSpec((self.crop,), np.bool_, ("batch", None)),
            "label": FieldSpec((), np.int32, ("batch",), 0,
                               int(self.ic.net.n_classes))}

  def _example(self, x: np.ndarray, label: int):
    out = {"feats": np.zeros((self.crop, frontend.N_MELS), np.float32),
           "mask": np.zeros((self.crop,), np.bool_),
           "label": np.int32(label)}
    out["feats"][:len(x)], out["mask"][:len(x)] = x, True
    return out

  def random_crop(self, i: int, rng: np.random.Generator):
    store = self.train_store
    x = store.frames(int(i))
    # Augment a little more than the crop (tempo may shorten it), then cut.
    span = int(self.crop * 1.2) + 1
    s = int(rng.integers(0, max(0, len(x) - span) + 1))
    x = self.augment(x[s:s + span], rng)
    s = int(rng.integers(0, max(0, len(x) - self.crop) + 1))
    return self._example(x[s:s + self.crop], self.train_labels[int(i)])

  def centre_crop(self, store, labels, i: int):
    x = store.frames(i)
    s = max(0, len(x) - self.crop) // 2
    return self._example(x[s:s + self.crop], max(int(labels[i]), 0))

  def loss_fn(self, model, batch, rng, step):
    del rng, step
    logits = model(batch["feats"], batch["mask"]).astype(jnp.float32)
    n = logits.shape[-1]
    onehot = jax.nn.one_hot(batch["label"], n)
    lo = self.ic.loss
    acc = (jnp.argmax(logits, -1) == batch["label"]).mean()
    if self.ic.net.cosine_head:
      # Additive margin: the true class's cosine must win by ``margin``.
      logits = lo.scale * (logits - lo.margin * onehot)
    target = onehot * (1 - lo.label_smoothing) + lo.label_smoothing / n
    loss = optax.softmax_cross_entropy(logits, target).mean()
    return {"model": loss}, {"accuracy": acc}

  def train_dataset(self, batch_size: int, seed: int):
    return (grain.MapDataset.source(self.usable)
            [jax.process_index()::jax.process_count()]
            .shuffle(seed=seed).repeat(None)
            .random_map(self.random_crop, seed=seed)
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(self.config)))

  def eval_dataset(self, batch_size: int):
    keep = np.flatnonzero(self.eval_labels >= 0)
    keep = keep if keep.size else np.arange(len(self.eval_store))
    idx = keep[_eval_indices(keep.size, batch_size)]
    return (grain.MapDataset.source(idx)
            .map(lambda i: self.centre_crop(self.eval_store, self.eval_labels,
                                            int(i)))
            .batch(batch_size, drop_remainder=True)
            .to_iter_dataset(read_options(evaluation=True)))


def make_task(config, train_store, eval_store) -> Task:
  if config.instrument.kind == "recognizer":
    return RecognizerTask(config, train_store, eval_store)
  return UtteranceTask(config, train_store, eval_store)
