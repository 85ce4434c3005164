"""Experiment 1 (research plan): do voice tokens carry semantic information?

Test: a probe predicts the next word from the codec tokens of the speech
so far, with no text. For every turn, the recognizer force-aligns the
transcript (``alignment``) to find where each word ends; the probe sees the
codec frames up to the end of word k (the last ``WINDOW`` of them) and must
name word k+1, when that word is one of the ``N_COMMON`` most frequent
words of the training transcripts. Trained on the training split, scored
on the held-out conversations, against three baselines:

- majority: always the most frequent next word;
- text n-gram: a trigram model of the preceding *words* (no audio);
- shuffled tokens: the same probe on the same frames in random order, which
  keeps what the frames contain but not when.

A fifth system asks whether voice adds to text: the trigram's and the
probe's next-word distributions multiplied (log-probabilities summed with
equal weight, no weight fitted to the held-out set), against the trigram
alone on the same examples.

A fourth system asks whether the trained CSM has learnt more from its
text than the codes show: the same probe on the frozen backbone's states
over the same window of frames, fed as audio rows alone (no text rows, as
the probe has none; rows attend only within the window, so the states hold
exactly what the tokens do, as the backbone reads them).

The plan's success metric is top-1 accuracy above 70% on common words.
"""

from __future__ import annotations

import collections
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from csm_jax.config.schema import make_config
from csm_jax.data.corpora import registry
from csm_jax.eval import stats
from csm_jax.eval import text_metrics
from csm_jax.eval.alignment import AlignmentError, word_end_times
from csm_jax.eval.instruments import ensure_instruments
from csm_jax.eval.ngram import NGram
from csm_jax.eval.probe import ProbeTask, log_probs, map_batches
from csm_jax.inference.loading import load_generator
from csm_jax.store import models
from csm_jax.training.trainer import Trainer

# 50 words: enough to cover the function words and frequent content words
# the plan's "common words" suggests while every class keeps dozens of
# training examples in a corpus of about an hour.
N_COMMON = 50
WINDOW = 64          # codec frames the probe sees (2.56 s at 25 Hz)
PROBE_STEPS = 1500


def _words(text: str) -> list[str]:
  return text_metrics.normalize(text).split()


def _turns(config, split, codec, instruments, log, block: int = 64):
  """(words, codes, end frame of every word) for each turn of a split."""
  src = registry.source(config, split)
  out, skipped = [], 0
  # The recognizer aligns a block of turns per call, batched by length.
  for start in range(0, len(src), block):
    todo = []
    for i in range(start, min(start + block, len(src))):
      rec = src[i]
      text = rec["text"]
      text = text.decode() if isinstance(text, bytes) else str(text)
      words = _words(text)
      if len(words) >= 2:
        todo.append((words, rec))
    lps, spf, alphabet, blank = instruments.ctc_log_probs_many(
        [registry.record_audio(rec, instruments.sample_rate)
         for _, rec in todo], instruments.sample_rate)
    for (words, rec), lp in zip(todo, lps):
      try:
        ends = word_end_times(" ".join(words), lp, alphabet, blank, spf)
      except AlignmentError:
        skipped += 1
        continue
      codes = codec.encode(registry.record_audio(rec, codec.sample_rate))
      # Floor: a frame that straddles the word's end may already hold the
      # onset of the next word, which would leak the answer to the probe.
      frames = [int(np.floor(e * codec.frame_rate)) for e in ends]
      out.append((words, np.asarray(codes), frames))
    if log:
      log(f"aligning {split}: {min(start + block, len(src))}/{len(src)} "
          "turns")
  return out, skipped


def _examples(turns, vocab: dict, n_codebooks: int, shuffle_seed=None):
  toks, valid, labels, histories = [], [], [], []
  rng = np.random.default_rng(shuffle_seed)
  for words, codes, ends in turns:
    for k in range(len(words) - 1):
      nxt = words[k + 1]
      if nxt not in vocab or ends[k] <= 0:
        continue
      seen = codes[:min(ends[k], len(codes)), :n_codebooks][-WINDOW:]
      if shuffle_seed is not None:
        seen = seen[rng.permutation(len(seen))]
      t = np.zeros((WINDOW, n_codebooks), np.int32)
      v = np.zeros((WINDOW,), bool)
      t[WINDOW - len(seen):] = seen
      v[WINDOW - len(seen):] = True
      toks.append(t), valid.append(v), labels.append(vocab[nxt])
      histories.append(words[:k + 1])
  return ({"tokens": np.stack(toks), "valid": np.stack(valid),
           "label": np.asarray(labels, np.int32)}, histories)


def backbone_features(model, tokens: np.ndarray, valid: np.ndarray,
                      batch: int = 64) -> np.ndarray:
  """The frozen backbone's states (N, W, width) over each window of codec
  frames (N, W, C) as audio-only rows; invalid (padding) rows are zero.

  Each window is its own segment, positions counted from its first valid
  frame, so a state sees the window's earlier frames and nothing else.
  """
  graphdef, params = nnx.split(model)
  n_cb = tokens.shape[-1]

  @jax.jit
  def states(params, audio, valid):
    m = nnx.merge(graphdef, params)
    b, w = valid.shape
    mask = jnp.concatenate([jnp.repeat(valid[..., None], n_cb, -1),
                            jnp.zeros((b, w, 1), bool)], -1)
    positions = jnp.maximum(jnp.cumsum(valid, axis=1) - 1, 0)
    h = m.backbone_hidden(audio, jnp.zeros((b, w), jnp.int32), mask,
                          positions.astype(jnp.int32),
                          valid.astype(jnp.int32))
    return jnp.where(valid[..., None], h, 0.0).astype(jnp.float32)

  return map_batches(lambda t, v: states(params, t, v), (tokens, valid),
                     batch)


def _probe_config(workdir_steps: int, seed: int):
  c = make_config("debug", task="probe")
  t = c.train
  t.steps, t.lr, t.warmup_steps, t.weight_decay = workdir_steps, 2e-3, 100, 0.01
  t.log_every, t.eval_every, t.ckpt_every, t.eval_steps = 100, 500, 500, 4
  t.seed = seed
  c.data.batch_size = 64
  c.mesh.data, c.mesh.fsdp, c.mesh.tensor = 1, 1, 1
  return c


def _train_probe(name, out_dir, train, heldout, n_cb, cb_size, n_classes,
                 seed, feature_dim: int = 0, steps: int = PROBE_STEPS):
  """The trained probe's (N, classes) log-probabilities on ``heldout``."""
  c = _probe_config(steps, seed)
  task = ProbeTask(c, train, heldout, n_cb, cb_size, n_classes, WINDOW,
                   feature_dim=feature_dim)
  tr = Trainer(c, os.path.join(out_dir, name), task)
  tr.run()
  model = models.merge(tr.builder.graphdef, tr.state["params"],
                       tr.state["extra"], task.param_groups())
  return log_probs(model, heldout[task.inputs], heldout["valid"])


def ngram_log_probs(lm: NGram, histories, common) -> np.ndarray:
  """(N, len(common)) the trigram's log-probabilities of each common word,
  renormalized over them (the probe's classes)."""
  p = np.asarray([[lm.prob(h, w) for w in common] for h in histories],
                 np.float64).reshape(len(histories), len(common))
  p = np.maximum(p, 1e-12)
  return np.log(p / p.sum(-1, keepdims=True))


def fused(probe_lp: np.ndarray, ngram_lp: np.ndarray) -> np.ndarray:
  """Top-1 of the product of the two distributions (equal weights)."""
  return np.argmax(probe_lp + ngram_lp, -1)


def _with_features(model, examples: dict) -> dict:
  return {"features": backbone_features(model, examples["tokens"],
                                        examples["valid"]),
          "valid": examples["valid"], "label": examples["label"]}


def run_experiment1(checkpoint: str, out_dir: str, seed: int = 0,
                    log=None, probe_steps: int = PROBE_STEPS,
                    instrument_overrides: dict | None = None) -> dict:
  """Runs Experiment 1 on ``checkpoint``; writes out_dir/report.{json,md}
  and accuracy.png. ``probe_steps``: each probe's training steps."""
  log = log or (lambda m: print(m, file=sys.stderr, flush=True))
  os.makedirs(out_dir, exist_ok=True)
  gen = load_generator(checkpoint)
  config, codec = gen.config, gen.codec
  instruments = ensure_instruments(config, overrides=instrument_overrides)
  log("experiment 1: aligning transcripts with the recognizer")
  train_turns, skip_tr = _turns(config, "train", codec, instruments, log)
  val_turns, skip_va = _turns(config, "validation", codec, instruments, log)
  counts = collections.Counter(w for words, _, _ in train_turns for w in words)
  common = [w for w, _ in counts.most_common(N_COMMON)]
  vocab = {w: i for i, w in enumerate(common)}
  coverage = sum(counts[w] for w in common) / max(sum(counts.values()), 1)
  n_cb = config.model.n_codebooks
  train, _ = _examples(train_turns, vocab, n_cb)
  heldout, histories = _examples(val_turns, vocab, n_cb)
  train_sh, _ = _examples(train_turns, vocab, n_cb, shuffle_seed=seed + 1)
  heldout_sh, _ = _examples(val_turns, vocab, n_cb, shuffle_seed=seed + 2)
  y = heldout["label"]
  log(f"experiment 1: {len(train['label'])} training and {len(y)} held-out "
      f"next-word examples over {N_COMMON} common words "
      f"({100 * coverage:.0f}% of word tokens)")
  train_next = collections.Counter(train["label"].tolist())
  majority = np.full_like(y, train_next.most_common(1)[0][0])
  lm = NGram(3).fit(words for words, _, _ in train_turns)
  ngram_lp = ngram_log_probs(lm, histories, common)
  ngram = np.argmax(ngram_lp, -1)
  probe_lp = _train_probe("probe_tokens", out_dir, train, heldout, n_cb,
                          codec.codebook_size, N_COMMON, seed,
                          steps=probe_steps)
  probe = np.argmax(probe_lp, -1)
  shuffled = np.argmax(_train_probe(
      "probe_shuffled", out_dir, train_sh, heldout_sh, n_cb,
      codec.codebook_size, N_COMMON, seed, steps=probe_steps), -1)
  log("experiment 1: the frozen backbone's states over the same windows")
  csm = nnx.merge(gen.graphdef, gen.params)
  width = int(csm.backbone.spec.width)
  frozen = np.argmax(_train_probe(
      "probe_backbone", out_dir, _with_features(csm, train),
      _with_features(csm, heldout), n_cb, codec.codebook_size, N_COMMON,
      seed, feature_dim=width, steps=probe_steps), -1)
  systems = {"probe on codec tokens": probe, "majority word": majority,
             "text trigram": ngram, "probe on time-shuffled tokens": shuffled,
             "probe on frozen backbone states": frozen,
             "text trigram + probe": fused(probe_lp, ngram_lp)}
  correct = {k: (v == y).astype(float) for k, v in systems.items()}
  acc = {k: stats.mean(v, seed=seed) for k, v in correct.items()}
  diffs = {k: stats.paired(correct["probe on codec tokens"], v, seed=seed)
           for k, v in correct.items()
           if k not in ("probe on codec tokens", "text trigram + probe")}
  # Does voice add to text: the fused system against the trigram alone.
  voice_adds = stats.paired(correct["text trigram + probe"],
                            correct["text trigram"], seed=seed)
  result = {
      "checkpoint": checkpoint, "n_common": N_COMMON, "coverage": coverage,
      "window_frames": WINDOW, "window_seconds": WINDOW / codec.frame_rate,
      "train_examples": int(len(train["label"])),
      "heldout_examples": int(len(y)),
      "turns_not_aligned": {"train": skip_tr, "validation": skip_va},
      "accuracy": {k: v.to_json() for k, v in acc.items()},
      "probe_minus_baseline": {k: v.to_json() for k, v in diffs.items()},
      "trigram_plus_probe_minus_trigram": voice_adds.to_json(),
      "distinct_words": len(counts), "probe_steps": int(probe_steps),
      "success_metric": "top-1 accuracy > 0.70 on common words",
      "met": bool(acc["probe on codec tokens"].value > 0.70),
      "common_words": common,
      "recognizer_validity": instruments.validity.get("recognizer"),
  }
  _write(result, acc, out_dir)
  for k, v in acc.items():
    print(f"{k:<32} top-1 {v}", flush=True)
  print(f"report: {os.path.join(out_dir, 'report.md')}", flush=True)
  return result


def _write(result: dict, acc: dict, out_dir: str) -> None:
  with open(os.path.join(out_dir, "report.json"), "w") as f:
    json.dump(result, f, indent=2)
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  names = list(acc)
  v = np.array([acc[k].value for k in names])
  err = np.array([[acc[k].value - acc[k].low for k in names],
                  [acc[k].high - acc[k].value for k in names]])
  fig, ax = plt.subplots(figsize=(7, 3.8))
  ax.barh(names, v, xerr=err, color=["#c44e52", "#999999", "#4c72b0",
                                      "#dd8452", "#8172b3", "#55a868"
                                      ][:len(names)],
          capsize=3)
  ax.axvline(0.70, color="black", ls="--", lw=1)
  ax.text(0.705, -0.4, "plan's target 0.70", fontsize=8)
  ax.set_xlim(0, 1)
  ax.set_xlabel(f"top-1 next-word accuracy\n({result['n_common']} common "
                "words, held-out conversations)")
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "accuracy.png"), dpi=110)
  plt.close(fig)
  md = ["# Experiment 1: voice-semantic coupling", "",
        "A probe predicts the next word from the codec tokens of the speech "
        f"so far (the last {result['window_frames']} frames, "
        f"{result['window_seconds']:.2f} s, up to the end of the current "
        "word by forced alignment), with no text.", "",
        f"Common words: the {result['n_common']} most frequent words of the "
        f"training transcripts ({100 * result['coverage']:.0f}% of word "
        f"tokens; {result['distinct_words']} distinct words). "
        f"{result['train_examples']} training examples, "
        f"{result['heldout_examples']} held-out (validation conversations).",
        "", "Baselines: the majority next word; a text trigram model of the "
        "preceding words; the probe on the same frames in random order. "
        "The probe on frozen backbone states reads the trained CSM "
        "backbone's states over the same frames, fed as audio rows alone.",
        "", "| system | top-1 accuracy [95% CI] |", "|---|---|"]
  md += [f"| {k} | {v} |" for k, v in acc.items()]
  md += ["", "| probe minus | difference [95% CI] |", "|---|---|"]
  md += [f"| {k} | {stats.Estimate(**v)} |"
         for k, v in result["probe_minus_baseline"].items()]
  md += ["", "Does voice add to text? The trigram's and the probe's "
         "distributions multiplied, minus the trigram alone: "
         f"{stats.Estimate(**result['trigram_plus_probe_minus_trigram'])}."]
  md += ["", f"Success metric (plan): {result['success_metric']}: "
         f"{'met' if result['met'] else 'not met'}.", "",
         "![accuracy](accuracy.png)"]
  with open(os.path.join(out_dir, "report.md"), "w") as f:
    f.write("\n".join(md) + "\n")
