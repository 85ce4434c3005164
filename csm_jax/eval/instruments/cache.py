"""Instruments cached per corpus: train once, then load in seconds.

``ensure_instruments(config)`` opens the corpus the config names, and looks
in ``<corpus dir>/instruments/<corpus fingerprint>/`` for a finished cache:
``instruments.json`` (the manifest: corpus, recipe version, class names,
wall times, validity), one training workdir per instrument
(``recognizer/``, ``speaker_encoder/``, ``emotion_classifier/``),
``features/`` and one PNG per instrument. What is missing is built: the
features, then each instrument on the shared trainer from the train split,
then its validity on the validation split (``validity``). A cache whose
manifest names another corpus, or an older recipe, is rebuilt; one whose
validity an older version measured is measured again.
``load_instruments(directory, expect_fingerprint)`` loads one and refuses a
cache of another corpus with an ``InstrumentsError`` naming both.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from typing import Callable

import numpy as np
from flax import nnx

from csm_jax.config.errors import UserError
from csm_jax.data.corpora import registry
from csm_jax.data.synthetic import voices
from csm_jax.eval.instruments import charlm
from csm_jax.eval.instruments import corpus as corpus_lib
from csm_jax.eval.instruments import recipes
from csm_jax.eval.instruments import tasks
from csm_jax.eval.instruments import validity as validity_lib
from csm_jax.eval.instruments.instruments import Instruments, Network
from csm_jax.store import layout
from csm_jax.store.restore import RestoreError, restore_params
from csm_jax.store.run_config import RunConfigError, load_run_config

MANIFEST = "instruments.json"
VALIDITY = "validity.json"
DONE = "done.json"           # written into an instrument's workdir last
FIELDS = {recipes.SPEAKER: "speaker", recipes.EMOTION: "emotion"}

Progress = Callable[[str], None]


class InstrumentsError(UserError, ValueError):
  """An instruments cache is missing, broken or of another corpus."""


def _print(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def cache_dir(config, fingerprint: str | None = None) -> str:
  """Where the instruments of ``config``'s corpus live."""
  root = registry.dataset_dir(config)
  return os.path.join(root, "instruments",
                      fingerprint or corpus_lib.fingerprint(root))


@contextlib.contextmanager
def _locked(directory: str):
  """One builder per cache at a time (other processes wait, then load)."""
  os.makedirs(directory, exist_ok=True)
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
  except ImportError:
    yield
    return
  with open(os.path.join(directory, ".lock"), "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _read_json(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise InstrumentsError(f"{path}: not a readable instruments manifest "
                           f"({e})") from e


def _write_json(path: str, value: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _emotion_names(source, store) -> tuple[str, ...]:
  names = corpus_lib.label_names(source, "emotion")
  if names:
    return names
  top = int(store.emotions.max()) if len(store) else -1
  return tuple(voices.EMOTION_NAMES[:top + 1]) if top < len(
      voices.EMOTION_NAMES) else tuple(f"class_{i}" for i in range(top + 1))


def _n_classes(kind: str, train, validation, emotion_names) -> int:
  if kind == recipes.EMOTION:
    return len(emotion_names)
  # A held-out conversation may bring a speaker the train split lacks (small
  # corpora): its id must still be a class for the trainer's eval batches.
  top = int(train.speakers.max())
  if len(validation):
    top = max(top, int(validation.speakers.max()))
  return top + 1


def _check_labels(kind: str, train, n_classes: int, data_dir: str) -> None:
  labels = train.speakers if kind == recipes.SPEAKER else train.emotions
  used = set(int(v) for v in labels if v >= 0)
  if len(used) < 2:
    raise InstrumentsError(
        f"{data_dir}: the train split has {len(used)} distinct "
        f"{FIELDS[kind]} label(s); the {kind} needs at least 2")
  if max(used) >= n_classes:
    raise InstrumentsError(
        f"{data_dir}: {FIELDS[kind]} label {max(used)} is outside the "
        f"corpus's {n_classes} classes")


def train_instrument(kind: str, train, validation, workdir: str,
                     n_classes: int = 0, overrides: dict | None = None,
                     progress: Progress = _print) -> dict:
  """Trains one instrument into ``workdir`` on the shared trainer; returns
  what ``done.json`` records (wall seconds, steps, final metrics)."""
  # pylint: disable=g-import-not-at-top
  from csm_jax.training.trainer import Trainer
  mean, std = train.band_stats()
  config = recipes.recipe(kind, n_classes, mean, std, overrides)
  task = tasks.make_task(config, train, validation)
  progress(f"training the {kind} ({config.train.steps} steps, batch "
           f"{config.data.batch_size}) in {workdir}")
  t0 = time.perf_counter()
  last = Trainer(config, workdir, task).run()
  done = {"wall_s": round(time.perf_counter() - t0, 1),
          "steps": int(config.train.steps),
          "final": {k: float(v) for k, v in last.items()
                    if isinstance(v, (int, float))}}
  _write_json(os.path.join(workdir, DONE), done)
  progress(f"trained the {kind} in {done['wall_s']:.0f}s")
  return done


def _network(workdir: str) -> Network:
  try:
    config = load_run_config(workdir)
    if "instrument" not in config:
      raise InstrumentsError(f"{workdir}: its run is not an instrument "
                             f"(task {config.get('task')!r})")
    ic = config.instrument
    restored = restore_params(
        workdir, dtype="float32", groups={"model": nnx.Param},
        model_fn=lambda rngs: tasks.build_model(ic, rngs))
  except (RestoreError, RunConfigError) as e:
    raise InstrumentsError(f"{workdir}: the instrument cannot be loaded "
                           f"({e})") from e
  graphdef, state = nnx.split(restored.model())
  return Network(graphdef, state, ic)


def _assemble(directory: str, names, fingerprint: str,
              validity: dict | None = None) -> Instruments:
  """The trained networks of a cache, with the character model of its
  train transcripts (fitted in a fraction of a second, so not stored)."""
  nets = {k: _network(os.path.join(directory, k)) for k in recipes.KINDS}
  path = os.path.join(directory, "features", "train.npz")
  try:
    with np.load(path) as z:
      texts = [str(t) for t in z["texts"]]
  except (OSError, KeyError, ValueError) as e:
    raise InstrumentsError(f"{path}: the train transcripts of the cache "
                           f"cannot be read ({e})") from e
  return Instruments(nets[recipes.RECOGNIZER], nets[recipes.SPEAKER],
                     nets[recipes.EMOTION], names, validity=validity,
                     directory=directory, fingerprint=fingerprint,
                     lm=charlm.fit(texts))


def load_instruments(directory: str,
                     expect_fingerprint: str | None = None) -> Instruments:
  """The instruments cached in ``directory``.

  Raises InstrumentsError when it holds no finished cache, or when
  ``expect_fingerprint`` is given and the cache was built on another corpus.
  """
  directory = layout.absolute(directory)
  path = os.path.join(directory, MANIFEST)
  if not os.path.exists(path):
    raise InstrumentsError(f"{directory}: no {MANIFEST}, so no finished "
                           "instruments cache (ensure_instruments builds one)")
  manifest = _read_json(path)
  got = manifest.get("corpus")
  if expect_fingerprint is not None and got != expect_fingerprint:
    raise InstrumentsError(
        f"{directory} holds instruments of corpus {got} "
        f"({manifest.get('corpus_name', '?')}), not of corpus "
        f"{expect_fingerprint}: rebuild them for this corpus with "
        "ensure_instruments, or point at that corpus's cache")
  # One process loads a cache once: the suite's sections and experiments
  # then share the networks and the programs compiled for them. The
  # manifest is rewritten whenever the cache is (re)built, so its text is
  # the key.
  key = (directory, json.dumps(manifest, sort_keys=True))
  if key not in _LOADED:
    if len(_LOADED) >= 4:
      _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = _assemble(directory, manifest["emotion_names"], got,
                             manifest.get("validity", {}))
  return _LOADED[key]


_LOADED: dict = {}


def _state(manifest_path: str, fingerprint: str, overrides) -> str:
  """"fresh" (load it), "revalidate" (trained, but its validity was
  measured by an older version) or "stale" (train again)."""
  if not os.path.exists(manifest_path):
    return "stale"
  try:
    m = _read_json(manifest_path)
  except InstrumentsError:
    return "stale"
  if (m.get("corpus") != fingerprint
      or m.get("recipe_version") != recipes.RECIPE_VERSION
      or m.get("overrides", {}) != json.loads(json.dumps(overrides))):
    return "stale"
  if m.get("validity_version") != validity_lib.VERSION:
    return "revalidate"
  return "fresh"


def ensure_instruments(config, progress: Progress | None = None,
                       overrides: dict | None = None) -> Instruments:
  """Loads the instruments of ``config``'s corpus, training what is missing.

  ``progress`` receives one line per stage (default: stderr); the trainer
  prints its own progress line with an ETA. ``overrides`` maps an
  instrument to recipe overrides (``{"recognizer": {"train.steps": 10}}``),
  for tests and experiments; a cache built with other overrides is rebuilt.
  """
  # pylint: disable=g-import-not-at-top
  from csm_jax.eval.instruments import plots
  progress = progress or _print
  overrides = {k: dict(v) for k, v in (overrides or {}).items()}
  unknown = set(overrides) - set(recipes.KINDS)
  if unknown:
    raise InstrumentsError(f"overrides for unknown instruments "
                           f"{sorted(unknown)}; known: {recipes.KINDS}")
  registry.ensure_corpus(config)
  data_dir = registry.dataset_dir(config)
  fp = corpus_lib.fingerprint(data_dir)
  directory = cache_dir(config, fp)
  manifest_path = os.path.join(directory, MANIFEST)
  with _locked(directory):
    state = _state(manifest_path, fp, overrides)
    if state == "fresh":
      return load_instruments(directory, fp)
    walls = {}
    if state == "revalidate":
      progress(f"{directory}: validity measured by an older version; "
               "measuring again (no training)")
      walls = _read_json(manifest_path).get("wall_s", {})
    elif os.path.exists(manifest_path):
      progress(f"{directory}: cache of another corpus, recipe or overrides; "
               "retraining")
      for kind in recipes.KINDS:
        shutil.rmtree(os.path.join(directory, kind), ignore_errors=True)
      os.remove(manifest_path)
    t0 = time.perf_counter()
    train = corpus_lib.load_or_build(config, "train", directory)
    validation = corpus_lib.load_or_build(config, "validation", directory)
    walls.setdefault("features_s", round(time.perf_counter() - t0, 1))
    source = registry.source(config, "train")
    names = _emotion_names(source, train)
    for kind in recipes.KINDS:
      workdir = os.path.join(directory, kind)
      done_path = os.path.join(workdir, DONE)
      if os.path.exists(done_path):
        walls[f"{kind}_s"] = _read_json(done_path).get("wall_s")
        continue
      shutil.rmtree(workdir, ignore_errors=True)   # an interrupted run
      n = 0
      if kind != recipes.RECOGNIZER:
        n = _n_classes(kind, train, validation, names)
        _check_labels(kind, train, n, data_dir)
      done = train_instrument(kind, train, validation, workdir, n,
                              overrides.get(kind), progress)
      walls[f"{kind}_s"] = done["wall_s"]
    inst = _assemble(directory, names, fp)
    progress("measuring the instruments on the validation split")
    t0 = time.perf_counter()
    inst.validity, details = validity_lib.measure(inst, config, fp)
    walls["validity_s"] = round(time.perf_counter() - t0, 1)
    plots.save_all(inst.validity, details, directory)
    manifest = {
        "corpus": fp, "corpus_name": config.data.corpus,
        "corpus_size": config.data.corpus_size, "data_dir": data_dir,
        "recipe_version": recipes.RECIPE_VERSION, "overrides": overrides,
        "validity_version": validity_lib.VERSION,
        "sample_rate": inst.sample_rate, "emotion_names": list(names),
        "wall_s": walls, "validity": inst.validity}
    _write_json(os.path.join(directory, VALIDITY), inst.validity)
    _write_json(manifest_path, manifest)
    progress(validity_lib.summary(inst.validity))
    return inst
