"""Pairs folder format, its checks and builder, and the session plan."""

import collections
import json
import os
import random

import numpy as np
import pytest
import soundfile as sf

from csm_jax.eval.listening import pairs as pairs_lib
from csm_jax.eval.listening import protocol

SR = 16000


def tone(path, freq=220.0, seconds=0.3):
  """A short sine wav; distinct frequencies keep the sides audibly apart."""
  t = np.arange(int(SR * seconds)) / SR
  x = 0.3 * np.sin(2 * np.pi * freq * t) * np.hanning(t.size)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
  return path


def wav_dirs(root, n=5, context=True, seconds=0.3):
  """ours/, baseline/ (and context/) folders of n same-named wavs."""
  dirs = {"ours": root / "src_ours", "baseline": root / "src_base"}
  if context:
    dirs["context"] = root / "src_ctx"
  for i in range(n):
    for j, (side, d) in enumerate(dirs.items()):
      tone(str(d / f"{i:03d}.wav"), 200 + 60 * j + 10 * i, seconds)
    (dirs["ours"] / f"{i:03d}.txt").write_text(f"Sentence number {i}.\n")
    if context:
      (dirs["context"] / f"{i:03d}.txt").write_text(f"Question {i}?")
  return dirs


def make_pairs(root, n=5, context=True, seconds=0.3, **kw):
  """A built pairs folder (via build_pairs) and its PairSet."""
  dirs = wav_dirs(root, n, context, seconds)
  out = root / "pairs"
  ps = pairs_lib.build_pairs(str(dirs["ours"]), str(dirs["baseline"]),
                             str(out), context and str(dirs["context"]),
                             name="demo", baseline_name="ground_truth", **kw)
  return str(out), ps


def _rewrite(out, fn):
  path = os.path.join(out, "pairs.json")
  with open(path) as f:
    doc = json.load(f)
  fn(doc)
  with open(path, "w") as f:
    json.dump(doc, f)


def test_build_pairs_copies_and_reads_transcripts(tmp_path):
  out, ps = make_pairs(tmp_path, n=3)
  assert [it.id for it in ps.items] == ["000", "001", "002"]
  assert ps.items[1].text == "Sentence number 1."
  assert ps.items[1].context_text == "Question 1?"
  assert ps.conditions == ("no_context", "context")
  assert (ps.system, ps.baseline, ps.name) == ("ours", "ground_truth", "demo")
  for it in ps.items:
    for rel in (it.ours, it.baseline, it.context):
      assert os.path.isfile(os.path.join(out, rel))
  assert ps.practice.a == ps.items[0].ours


def test_build_without_context_has_one_condition(tmp_path):
  _, ps = make_pairs(tmp_path, n=2, context=False)
  assert ps.conditions == ("no_context",)
  assert all(it.context is None for it in ps.items)


def test_build_refuses_unmatched_names(tmp_path):
  dirs = wav_dirs(tmp_path, n=2, context=False)
  tone(str(dirs["baseline"] / "extra.wav"))
  with pytest.raises(pairs_lib.PairsError, match="extra.wav"):
    pairs_lib.build_pairs(str(dirs["ours"]), str(dirs["baseline"]),
                          str(tmp_path / "out"))


def test_build_refuses_to_overwrite(tmp_path):
  out, _ = make_pairs(tmp_path, n=1, context=False)
  with pytest.raises(pairs_lib.PairsError, match="already exists"):
    pairs_lib.build_pairs(str(tmp_path / "src_ours"),
                          str(tmp_path / "src_base"), out)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["items"][1].update(ours="ours/nope.wav"),
     r"items\[1\].*ours.*nope.wav does not exist"),
    (lambda d: d["items"][0].update(baseline="../src_base/000.wav"),
     r"items\[0\].*baseline.*inside"),
    (lambda d: d["items"][0].update(baseline="/etc/passwd"),
     r"baseline.*relative path"),
    (lambda d: d["items"][0].update(score=3), r"unknown field 'score'"),
    (lambda d: d["items"][2].update(id="000"), r"items\[2\].*used twice"),
    (lambda d: d["items"][0].pop("ours"), r"missing field 'ours'"),
    (lambda d: d["items"][0].update(text=5), r"'text' must be str"),
    (lambda d: d.update(items=[]), r"'items' is empty"),
    (lambda d: d.update(traps=True), r"'traps' must be int"),
    (lambda d: d.update(conditions=["context", "loud"]), r"'conditions'"),
    (lambda d: d.update(practice={"a": "ours/000.wav"}),
     r"practice.*missing field 'b'"),
])
def test_bad_pairs_json_names_the_field(tmp_path, edit, match):
  out, _ = make_pairs(tmp_path, n=3)
  _rewrite(out, edit)
  with pytest.raises(pairs_lib.PairsError, match=match):
    pairs_lib.load_pairs(out)


def test_symlink_out_of_the_folder_is_refused(tmp_path):
  out, _ = make_pairs(tmp_path, n=1, context=False)
  os.symlink(tone(str(tmp_path / "outside.wav")),
             os.path.join(out, "ours", "link.wav"))
  _rewrite(out, lambda d: d["items"][0].update(ours="ours/link.wav"))
  with pytest.raises(pairs_lib.PairsError, match="leads outside"):
    pairs_lib.load_pairs(out)


def test_missing_and_malformed_pairs_json(tmp_path):
  with pytest.raises(pairs_lib.PairsError, match="no pairs.json"):
    pairs_lib.load_pairs(str(tmp_path))
  (tmp_path / "pairs.json").write_text('{"items": [')
  with pytest.raises(pairs_lib.PairsError, match="pairs.json: not valid JSON"):
    pairs_lib.load_pairs(str(tmp_path))
  (tmp_path / "pairs.json").write_text("[1, 2]")
  with pytest.raises(pairs_lib.PairsError, match="JSON object"):
    pairs_lib.load_pairs(str(tmp_path))


def test_unreadable_audio_is_refused(tmp_path):
  out, _ = make_pairs(tmp_path, n=1, context=False)
  with open(os.path.join(out, "ours", "000.wav"), "wb") as f:
    f.write(b"RIFF not really a wave file")
  with pytest.raises(pairs_lib.PairsError, match="cannot read audio"):
    pairs_lib.load_pairs(out)


def test_plan_has_every_item_once_per_condition_and_traps(tmp_path):
  _, ps = make_pairs(tmp_path, n=5)
  plan = protocol.plan_session(ps, random.Random(1))
  assert len(plan) == 5 * 2 + 2
  assert [t.position for t in plan] == list(range(12))
  assert len({t.pair for t in plan}) == 12
  real = [(t.condition, t.item_id) for t in plan if not t.is_trap]
  assert sorted(real) == sorted((c, it.id) for c in ps.conditions
                                for it in ps.items)
  traps = [t for t in plan if t.is_trap]
  assert collections.Counter(t.condition for t in traps) == {
      "no_context": 1, "context": 1}
  for t in plan:
    item = next(it for it in ps.items if it.id == t.item_id)
    if t.is_trap:
      assert t.audio_a == t.audio_b in (item.ours, item.baseline)
    else:
      ours = t.audio_a if t.side_a == "ours" else t.audio_b
      assert ours == item.ours and {t.audio_a, t.audio_b} == {
          item.ours, item.baseline}
    assert (t.context is not None) == (t.condition == "context")
  # Conditions are blocks: one switch at most.
  switches = sum(a.condition != b.condition for a, b in zip(plan, plan[1:]))
  assert switches == 1


def test_plan_randomizes_order_sides_and_blocks(tmp_path):
  _, ps = make_pairs(tmp_path, n=6)
  rng = random.Random(0)
  plans = [protocol.plan_session(ps, rng) for _ in range(20)]
  orders = {tuple(t.item_id for t in p if not t.is_trap) for p in plans}
  assert len(orders) > 10
  sides = collections.Counter(t.side_a for p in plans for t in p)
  assert sides["ours"] > 60 and sides["baseline"] > 60
  assert {p[0].condition for p in plans} == {"no_context", "context"}


def test_plan_max_items(tmp_path):
  _, ps = make_pairs(tmp_path, n=6)
  plan = protocol.plan_session(ps, random.Random(0), max_items=2)
  assert len(plan) == 2 * 2 + 2


@pytest.mark.parametrize("score, side_a, want", [
    (3, "baseline", 3), (3, "ours", -3), (-2, "ours", 2), (-1, "baseline", -1),
    (0, "ours", 0), (2, "trap", None)])
def test_signed_score_by_side(score, side_a, want):
  assert protocol.signed_score(score, side_a) == want
