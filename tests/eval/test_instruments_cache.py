"""The instruments on a tiny corpus: trained through the shared trainer,
cached by the corpus fingerprint, loaded again without training, refusing
another corpus's cache; the recognizer's packing of whole turns; and the
quick suite scored with plugged-in instruments (a Whisper directory and
Resemblyzer) in place of the corpus-trained ones."""

import json
import os
import shutil
import time

import numpy as np
import pytest

from csm_jax.config import make_config
from csm_jax.config.errors import UserError
from csm_jax.data.corpora import registry, synthetic
from csm_jax.eval.instruments import (ALPHABET, BLANK, Instruments,
                                      InstrumentsError, cache_dir,
                                      ensure_instruments, load_instruments)
from csm_jax.eval.instruments import cache as cache_lib
from csm_jax.eval.instruments import instruments as inst_mod
from csm_jax.eval.instruments import corpus as corpus_lib
from csm_jax.eval.instruments import ctc, recipes, tasks
from csm_jax.eval.instruments.corpus import FeatureStore

# Networks and runs small enough to train all three in seconds: these test
# the plumbing, not accuracy (the default corpus's figures are in
# docs/evaluation.md).
_SMALL = {"train.steps": 3, "train.log_every": 1, "train.eval_every": 3,
          "train.eval_steps": 1, "train.warmup_steps": 1,
          "data.batch_size": 2, "instrument.net.width": 16,
          "instrument.net.dilations": (1, 2)}
TINY = {recipes.RECOGNIZER: dict(_SMALL), recipes.SPEAKER: dict(_SMALL),
        recipes.EMOTION: dict(_SMALL)}


def _config(data_dir):
  c = make_config("debug")
  c.data.corpus_size, c.data.data_dir = "tiny", data_dir
  return c


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("instruments_corpus"))
  synthetic.prepare("tiny", d, num_workers=2, progress=False)
  return d


@pytest.fixture(scope="module")
def built(corpus_dir):
  lines = []
  t0 = time.perf_counter()
  inst = ensure_instruments(_config(corpus_dir), progress=lines.append,
                            overrides=TINY)
  return inst, lines, time.perf_counter() - t0


def test_ensure_trains_every_instrument_and_reports_validity(built):
  inst, lines, _ = built
  assert isinstance(inst, Instruments)
  assert any("training the recognizer" in l for l in lines)
  assert any("training the emotion_classifier" in l for l in lines)
  v = inst.validity
  assert set(v) >= {"corpus", "recognizer", "speaker", "emotion"}
  assert v["recognizer"]["n_utterances"] > 0
  assert 0.0 <= v["recognizer"]["cer"] and 0.0 <= v["recognizer"]["wer"]
  assert v["emotion"]["chance"] == pytest.approx(1 / len(inst.emotion_names))
  conf = np.asarray(v["emotion"]["confusion"])
  assert conf.shape == (6, 6) and conf.sum() == v["emotion"]["n"]
  json.dumps(v)   # serializable as it is
  for kind in recipes.KINDS:
    assert os.path.getsize(os.path.join(inst.directory, f"{kind}.png")) > 1000
    done = json.load(open(os.path.join(inst.directory, kind, "done.json")))
    assert done["steps"] == 3 and done["wall_s"] > 0
  manifest = json.load(open(os.path.join(inst.directory,
                                         cache_lib.MANIFEST)))
  assert manifest["corpus"] == inst.fingerprint == v["corpus"]
  assert set(manifest["wall_s"]) >= {"features_s", "recognizer_s"}


def test_public_calls_shapes(built):
  inst, _, _ = built
  rng = np.random.default_rng(0)
  audios = [0.1 * rng.normal(size=n).astype(np.float32)
            for n in (24000, 60000, 5000)]
  texts = inst.transcribe(audios, 24000)
  assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
  lp, spf, alphabet, blank = inst.ctc_log_probs(audios[1], 24000)
  assert alphabet == ALPHABET and blank == BLANK and alphabet[blank] == "_"
  assert lp.shape[1] == len(ALPHABET)
  # One frame every 20 ms, covering the 2.5 s utterance.
  assert spf == pytest.approx(0.02)
  assert abs(lp.shape[0] * spf - 2.5) < 0.1
  assert np.allclose(np.exp(lp).sum(1), 1.0, atol=1e-4)
  # Batched by length, each utterance reads as it does alone.
  many, *_ = inst.ctc_log_probs_many(audios, 24000)
  assert len(many) == 3
  for a, m in zip(audios, many):
    alone = inst.ctc_log_probs(a, 24000)[0]
    assert m.shape == alone.shape
    np.testing.assert_allclose(m, alone, atol=1e-4)
  emb = inst.speaker_embeddings(audios, 24000)
  assert emb.shape[0] == 3 and np.allclose(np.linalg.norm(emb, axis=1), 1)
  probs = inst.emotion_probs(audios, 16000)
  assert probs.shape == (3, len(inst.emotion_names))
  assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
  p = inst.prosody(audios[0], 24000, text="one two three")
  assert set(p) >= {"f0_hz", "voiced", "energy_db", "times_s",
                    "syllables_per_s", "words_per_s"}
  assert len(p["f0_hz"]) == len(p["energy_db"]) == len(p["times_s"])
  assert p["words_per_s"] == pytest.approx(3.0)
  with pytest.raises(TypeError, match="sequence of utterances"):
    inst.transcribe(audios[0], 24000)


def test_padding_does_not_change_results(built):
  inst, _, _ = built
  rng = np.random.default_rng(1)
  a = 0.1 * rng.normal(size=30000).astype(np.float32)
  b = 0.1 * rng.normal(size=90000).astype(np.float32)
  alone = inst.speaker_embeddings([a], 16000)
  batched = inst.speaker_embeddings([b, a], 16000)   # a padded to b's bucket
  assert np.allclose(alone[0], batched[1], atol=1e-4)


def test_second_call_loads_without_training(built, corpus_dir):
  inst, _, first = built
  lines = []
  t0 = time.perf_counter()
  again = ensure_instruments(_config(corpus_dir), progress=lines.append,
                             overrides=TINY)
  assert not any("training" in l for l in lines)
  assert again.validity == inst.validity
  assert time.perf_counter() - t0 < first


def test_cache_of_another_corpus_is_refused(built, tmp_path):
  inst, _, _ = built
  with pytest.raises(InstrumentsError) as e:
    load_instruments(inst.directory, expect_fingerprint="0123456789abcdef")
  assert inst.fingerprint in str(e.value) and "0123456789abcdef" in str(e.value)
  assert isinstance(e.value, UserError)
  with pytest.raises(InstrumentsError, match="no instruments.json"):
    load_instruments(str(tmp_path))
  # A cache copied in under this corpus's name from another corpus is
  # detected by its manifest and retrained, not used.
  path = os.path.join(inst.directory, cache_lib.MANIFEST)
  m = json.load(open(path))
  assert cache_lib._state(path, "fedcba9876543210", m["overrides"]) == "stale"
  assert cache_lib._state(path, inst.fingerprint, {}) == "stale"
  assert cache_lib._state(path, inst.fingerprint, m["overrides"]) == "fresh"


def test_fingerprint_follows_the_corpus_files(corpus_dir, tmp_path):
  cfg = _config(corpus_dir)
  src = registry.dataset_dir(cfg)
  fp = corpus_lib.fingerprint(src)
  assert fp == os.path.basename(cache_dir(cfg))
  copy = tmp_path / "copy"
  shutil.copytree(src, copy, ignore=shutil.ignore_patterns("instruments"))
  assert corpus_lib.fingerprint(str(copy)) == fp   # caches beside: ignored
  info = copy / "dataset_info.json"
  info.write_text(info.read_text().replace("tiny", "tinier"))
  assert corpus_lib.fingerprint(str(copy)) != fp
  with pytest.raises(corpus_lib.CorpusError, match="dataset_info.json"):
    corpus_lib.fingerprint(str(tmp_path))


def test_one_instrument_learns_through_the_shared_trainer(corpus_dir,
                                                          tmp_path):
  store = corpus_lib.load_or_build(_config(corpus_dir), "train",
                                   str(tmp_path / "f"), progress=False)
  done = cache_lib.train_instrument(
      recipes.SPEAKER, store, store, str(tmp_path / "spk"),
      n_classes=int(store.speakers.max()) + 1, progress=lambda _: None,
      overrides={"train.steps": 40, "train.log_every": 5,
                 "train.eval_every": 40, "data.batch_size": 8,
                 "instrument.net.width": 32, "instrument.net.dilations": (1,),
                 "instrument.data.crop_frames": 100})
  rows = [json.loads(l) for l in open(tmp_path / "spk" / "metrics.jsonl")]
  losses = [r["loss"] for r in rows if "loss" in r]
  assert len(losses) == 8 and np.isfinite(losses).all()
  assert np.mean(losses[-2:]) < losses[0]
  net = cache_lib._network(str(tmp_path / "spk"))
  assert net.config.kind == recipes.SPEAKER


def _store(lengths, texts):
  feats = [np.full((n, 80), float(i), np.float16)
           for i, n in enumerate(lengths)]
  return FeatureStore(np.concatenate(feats),
                      np.cumsum([0] + list(lengths)).astype(np.int64),
                      list(texts), np.zeros(len(texts), np.int32),
                      np.zeros(len(texts), np.int32), ["c"] * len(texts))


def test_packing_joins_whole_turns_with_their_transcripts():
  texts = ["alpha", "bravo bravo", "charlie", "delta"]
  lengths = [100, 150, 220, 700]    # "delta" never fits the window
  store = _store(lengths, texts)
  cfg = recipes.recipe(recipes.RECOGNIZER, 0, np.zeros(80), np.ones(80), {
      "instrument.data.window_frames": 600, "instrument.data.max_label": 40,
      "instrument.augment.tempo": (1.0, 1.0),
      "instrument.augment.warp": (1.0, 1.0),
      "instrument.augment.gain_db": (0.0, 0.0),
      "instrument.augment.p_noise": 0.0, "instrument.augment.p_band_limit": 0.0,
      "instrument.augment.time_masks": 0, "instrument.augment.band_masks": 0})
  task = tasks.make_task(cfg, store, store)
  assert sorted(task.fits.tolist()) == [0, 1, 2]
  rng = np.random.default_rng(0)
  by_text = {t: i for i, t in enumerate(texts)}
  for _ in range(20):
    ex = task.pack(rng)
    text = ctc.decode_ids(ex["labels"][ex["label_mask"]])
    words = text.replace("bravo bravo", "bravo_bravo").split(" ")
    turns = [by_text[w.replace("_", " ")] for w in words]
    n = int(ex["mask"].sum())
    assert n == sum(lengths[i] for i in turns) <= 600
    # Frames are the turns' own, end to end, in label order.
    got = ex["feats"][:n, 0]
    want = np.concatenate([np.full(lengths[i], float(i)) for i in turns])
    assert np.array_equal(got, want)
    assert not ex["mask"][n:].any()
  single = task.single(store, 3)
  assert single["mask"].sum() == 600   # cut to the window for evaluation


def _tiny_generator(corpus_dir):
  """A random tiny CSM with a random 12.5 Hz codec (few frames to generate),
  reading the tiny corpus: enough for the quick suite's every step (its
  speech is noise)."""
  from flax import nnx
  from csm_jax.codec.handle import CodecHandle
  from csm_jax.codec.model import init_codec
  from csm_jax.inference.generator import Generator
  from csm_jax.model.csm import CSM
  from tests.codec.conftest import tiny_config as tiny_codec_config
  from tests.foundation.tiny import tiny_config
  from tests.inference.test_generator import CharTokenizer
  c = tiny_config()
  base = _config(corpus_dir)
  c.data.source, c.data.corpus_size = base.data.source, "tiny"
  c.data.data_dir = corpus_dir
  c.data.seq_len = c.model.max_seq_len = 128
  cc = tiny_codec_config()
  cc.ratios, cc.downsample = (8, 5), 16
  cc.rvq.levels, cc.rvq.codebook_size = (c.model.n_codebooks,
                                         c.model.codebook_size)
  model = CSM(c.model, nnx.Rngs(params=0))
  return Generator(c, *nnx.split(model), CharTokenizer(),
                   CodecHandle(init_codec(cc)))


def test_quick_suite_scores_with_plugged_whisper_and_resemblyzer(
    built, corpus_dir, tmp_path):
  """What ``evaluate --recognizer=DIR --speaker_model=resemblyzer`` runs:
  the plugged instruments measured on the validation split (cached), then
  every row of the quick suite scored with them and reported."""
  from csm_jax.eval import report
  from csm_jax.eval import suite as suite_lib
  from csm_jax.eval import text_metrics
  from csm_jax.eval.instruments import PluggedInstruments, select_instruments
  from csm_jax.eval.instruments.plugged import (RESEMBLYZER, check,
                                                plugged_validity)
  from csm_jax.eval.instruments.validity import validation_records
  from tests.eval import tiny_hf_models as hf
  base, _, _ = built
  whisper = hf.whisper_dir(str(tmp_path / "whisper"))
  gen = _tiny_generator(corpus_dir)
  lines = []
  inst = select_instruments(gen.config, recognizer=whisper,
                            speaker_model="resemblyzer", overrides=TINY,
                            progress=lines.append)
  assert isinstance(inst, PluggedInstruments)
  assert not any("training" in l for l in lines), lines
  assert sum("measuring the plugged" in l for l in lines) == 2, lines
  v = inst.validity
  # The tiny Whisper says "hello world" to everything: its CER on the
  # validation transcripts is known exactly.
  _, _, texts, _, _ = validation_records(gen.config)
  ce, cl = text_metrics.edit_counts(texts, ["hello world"] * len(texts),
                                    "char")
  assert v["recognizer"]["cer"] == pytest.approx(sum(ce) / sum(cl))
  assert "whisper" in v["recognizer"]["instrument"]
  assert "resemblyzer" in v["speaker"]["instrument"]
  assert 0.0 <= v["speaker"]["eer"] <= 1.0
  assert v["emotion"] == base.validity["emotion"]
  lines.clear()
  for slot, plug, instrument in (
      ("recognizer", check(recognizer=whisper)["recognizer"],
       inst.recognizer), ("speaker", RESEMBLYZER, inst.speaker)):
    again = plugged_validity(slot, plug, instrument, gen.config,
                             base.directory, base.fingerprint, lines.append)
    assert again == v[slot]
  assert not lines       # measured once, then read from the cache

  result = suite_lib.run(gen, inst, "quick", n_prompts=1,
                         progress=lambda *a: None)
  for row in result.rows.values():
    assert row.transcripts == ["hello world"]
    assert row.embeddings.shape == (1, 256)     # Resemblyzer's, not ours
  out = str(tmp_path / "report")
  data = report.write(result, out, "tiny", inst.validity)
  assert "whisper" in data["instruments"]["recognizer"]["instrument"]
  md = open(os.path.join(out, "report.md")).read()
  assert "| recognizer: whisper" in md and "| speaker encoder: resemblyzer" \
      in md, md[:1500]


def test_a_process_loads_a_cache_once_and_tracks_a_clip_once(built,
                                                             monkeypatch):
  inst, _, _ = built
  first = load_instruments(inst.directory)
  assert load_instruments(inst.directory) is first
  # A rebuilt cache rewrites its manifest: that is loaded afresh.
  path = os.path.join(inst.directory, cache_lib.MANIFEST)
  saved = open(path).read()
  try:
    m = json.loads(saved)
    m["wall_s"]["features_s"] = -1.0
    open(path, "w").write(json.dumps(m))
    assert load_instruments(inst.directory) is not first
  finally:
    open(path, "w").write(saved)
  calls = []
  track = inst_mod.corpus_features.f0_track
  monkeypatch.setattr(inst_mod.corpus_features, "f0_track",
                      lambda x, sr: calls.append(len(x)) or track(x, sr))
  a = 0.1 * np.sin(np.arange(12000) * 0.06).astype(np.float32)
  p1 = first.prosody(a, 24000, text="one")
  p1["f0_hz"][:] = -5.0   # the caller's copy
  p2 = first.prosody(a.copy(), 24000, text="one")
  assert len(calls) == 1
  assert not np.any(p2["f0_hz"] == -5.0)
  first.prosody(a[:6000], 24000, text="one")
  assert len(calls) == 2
