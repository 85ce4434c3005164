"""Experiment 3's figures, pairing and plumbing, on made-up measurements.

No model is trained here: the scoring and the report are checked against
values computed by hand, and the generation loop against a stand-in
generator that records what it was asked.
"""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from csm_jax.eval import experiment3 as e3
from csm_jax.eval.suite import EvaluationError
from csm_jax.inference.generator import Chunk, Control, Sampling


def _prompt(i, emotion, arc, seconds):
  audio = np.zeros(int(seconds * 100), np.float32)
  target = SimpleNamespace(text=f"t{i}", speaker=i % 2, audio=audio,
                           emotion=emotion)
  return SimpleNamespace(id=f"c/{i}", arc=arc, target=target, context=[])


def _scores(name, pred, target, ref, out):
  return e3.Scores(name, np.asarray(pred), np.asarray(target),
                   np.asarray(ref, float), np.asarray(out, float))


def test_paired_correlation_is_the_difference_of_the_two_correlations():
  rng = np.random.default_rng(0)
  ref = rng.normal(size=40)
  follows = ref + 0.3 * rng.normal(size=40)
  ignores = rng.normal(size=40)
  d = e3.paired_correlation(ref, follows, ignores, seed=0)
  want = (np.corrcoef(ref, follows)[0, 1] - np.corrcoef(ref, ignores)[0, 1])
  assert d.value == pytest.approx(want)
  assert d.n == 40
  assert 0 < d.low < d.value < d.high
  # A prompt missing in either system is dropped from both.
  gap = follows.copy()
  gap[3] = np.nan
  assert e3.paired_correlation(ref, gap, ignores).n == 39
  assert np.isnan(e3.paired_correlation(ref[:2], follows[:2],
                                        ignores[:2]).value)


def test_summary_counts_intended_emotions_per_condition_arc_and_pair():
  prompts = [_prompt(i, "happy", "heated_argument" if i < 6 else
                     "friendly_chat", 1.0) for i in range(10)]
  target = [1] * 9 + [-1]              # the last prompt has no label
  ref = np.linspace(6, 8, 10)
  stream = _scores("stream_emotion", [1] * 8 + [0, 1], target, ref, ref)
  base = _scores("baseline", [1, 1, 0, 0, 0, 0, 1, 0, 0, 1], target, ref,
                 ref[::-1])
  hits = np.asarray([1.0] * 5 + [0.0] * 5)
  s = e3.summarize({"stream_emotion": stream, "baseline": base,
                    "stream_free": base}, prompts, hits, seed=0)
  rows = s["rows"]
  accuracy = rows["stream_emotion"]["emotion_accuracy"]
  assert accuracy.value == pytest.approx(8 / 9)
  assert rows["baseline"]["emotion_accuracy"].value == pytest.approx(3 / 9)
  assert rows["stream_emotion"]["emotion_accuracy"].n == 9
  assert rows["stream_emotion"]["f0_continuity"].value == pytest.approx(1.0)
  assert rows["baseline"]["f0_continuity"].value == pytest.approx(-1.0)
  assert rows["stream_free"]["style_agreement"].value == pytest.approx(0.5)
  d = s["differences"]["stream_emotion - baseline"]
  assert d["emotion_accuracy"].value == pytest.approx(5 / 9)
  assert d["f0_continuity"].value == pytest.approx(2.0)
  assert rows["baseline"]["voiced_responses"].value == 1.0
  # Below MIN_F0_PROMPTS prompts with a pitch track, no correlation.
  gaps = ref.copy()
  gaps[:2] = np.nan
  few = e3.summarize({"stream_emotion": _scores("stream_emotion", [1] * 10,
                                                target, gaps, ref)}, prompts)
  assert few["rows"]["stream_emotion"]["f0_continuity"].n == 8
  assert np.isnan(few["rows"]["stream_emotion"]["f0_continuity"].value)
  arcs = s["per_arc"]
  assert arcs["heated_argument"]["baseline"].value == pytest.approx(2 / 6)
  assert arcs["friendly_chat"]["stream_emotion"].value == pytest.approx(2 / 3)


def test_report_files_and_table(tmp_path):
  prompts = [_prompt(i, "sad", "emotional_confession", 1.0) for i in range(6)]
  ref = np.arange(6.0)
  scores = {"ground_truth": _scores("ground_truth", [2] * 6, [2] * 6, ref,
                                    ref),
            "stream_emotion": _scores("stream_emotion", [2, 2, 2, 0, 0, -1],
                                      [2] * 6, ref, ref + 1),
            "baseline": _scores("baseline", [0] * 6, [2] * 6, ref,
                                [np.nan] * 6)}
  result = {"checkpoint": "a", "compare": "b", "n_prompts": 6,
            "intensity": e3.INTENSITY, "arcs_missing": ["friendly_chat"],
            **e3.summarize(scores, prompts)}
  data = e3.write_report(result, str(tmp_path))
  for name in ("report.json", "report.md", "experiment3.png"):
    assert os.path.getsize(tmp_path / name) > 0
  saved = json.loads((tmp_path / "report.json").read_text())
  assert saved["rows"]["stream_emotion"]["emotion_accuracy"]["value"] == 0.5
  text = e3.table(data)
  # 6 prompts are too few for a correlation: n/a, with the count.
  assert "| stream_emotion | 0.500 [" in text and "| n/a (6) | 1.00 |" in text
  assert "| baseline | 0.000 [0.000, 0.000] | n/a (0) | 0.00 |" in text
  assert "stream_emotion - baseline" in text
  md = (tmp_path / "report.md").read_text()
  assert "friendly_chat" in md and "experiment3.png" in md


class _Recorder:
  """Stands in for a Generator: one chunk per request, style = 10 + index."""

  def __init__(self, stream=True):
    self.codec = SimpleNamespace(sample_rate=100)
    self.bins = object() if stream else None
    self.calls = []

  def stream_batch(self, reqs, sampling, controls=None):
    self.calls.append(([r[0] for r in reqs], controls, sampling.max_seconds))
    yield [Chunk(np.zeros((2, 1)), np.full(500, 0.5, np.float32), 0.0,
                 eos=True, style=10 + int(r[0][1:])) for r in reqs]


def test_speak_sends_each_prompt_its_control_and_keeps_its_style():
  prompts = [_prompt(i, "happy", "friendly_chat", s)
             for i, s in enumerate([3.0, 1.0, 2.0, 0.5, 4.0])]
  controls = [Control(emotion=f"e{i}") if i != 2 else None for i in range(5)]
  gen = _Recorder()
  out = e3.speak(gen, prompts, Sampling(max_seconds=10.0), controls,
                 batch_size=2)
  # Shortest prompts first, two at a time; each with its own control.
  texts = [c[0] for c in gen.calls]
  assert texts == [["t3", "t1"], ["t2", "t0"], ["t4"]]
  sent = {t: c for call in gen.calls for t, c in zip(call[0], call[1])}
  assert sent["t0"].emotion == "e0" and sent["t4"].emotion == "e4"
  assert sent["t2"] == Control()
  assert out.styles == [10, 11, 12, 13, 14]
  # Each utterance is cut at its own cap (2 x truth + 1 s): 0.5 s -> 2 s.
  assert len(out.audios[3]) == 200 and not out.eos[3]
  assert len(out.audios[4]) == 500 and out.eos[4]
  assert e3.speak(_Recorder(stream=False), prompts[:1],
                  Sampling()).styles is None


def test_experiment3_needs_the_model_without_the_stream():
  with pytest.raises(EvaluationError, match="--compare"):
    e3.run_experiment3("/nonexistent/run", "/tmp/unused", compare=None)


def test_responses_are_laid_out_for_the_listening_test(tmp_path):
  prompts = [_prompt(i, "calm", "friendly_chat", 1.0) for i in range(3)]
  for p in prompts:
    p.context = [SimpleNamespace(audio=np.full(50, 0.1, np.float32),
                                 text="before")]
  tone = np.full(100, 0.2, np.float32)
  spoken = {k: e3.Spoken([tone, tone, tone], [True] * 3) for k in e3.MODELS}
  spoken["baseline"].audios[1] = np.zeros(0, np.float32)   # said nothing
  root = e3.write_listening(str(tmp_path / "l"), prompts, spoken, 100)
  for name in (*e3.MODELS, "context"):
    # Prompt 1 is left out everywhere: the folders must pair up.
    assert sorted(os.listdir(os.path.join(root, name))) == [
        "c_0.txt", "c_0.wav", "c_2.txt", "c_2.wav"]
  assert (tmp_path / "l" / "context" / "c_2.txt").read_text() == "before\n"
  assert (tmp_path / "l" / "stream_free" / "c_0.txt").read_text() == "t0\n"
