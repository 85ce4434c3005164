"""Suite metrics on constructed utterances whose scores are known.

The instruments here are a fixture that reads what each constructed clip
encodes (its transcript, its voice, its pitch), so every metric's value is
known in advance; the trained instruments are tested on their own.
"""

import dataclasses

import numpy as np
import pytest

from csm_jax.eval import metrics, report
from csm_jax.eval.prompts import Prompt, Turn

SR = 8000


class ClipInstruments:
  """Clip i says TEXTS[i]; sample 0 holds the voice, sample 1 the pitch."""

  sample_rate = SR
  emotion_names = ("neutral", "happy")

  def __init__(self, texts):
    self.texts = texts

  def transcribe(self, audios, sr):
    return [self.texts.get(int(round(a[2] * 1000)), "") for a in audios]

  def speaker_embeddings(self, audios, sr):
    out = []
    for a in audios:
      v = np.zeros(4)
      v[int(round(a[0] * 10)) % 4] = 1.0
      v[(int(round(a[0] * 10)) + 1) % 4] = 0.3
      out.append(v / np.linalg.norm(v))
    return np.asarray(out)

  def emotion_probs(self, audios, sr):
    return np.asarray([[0.2, 0.8] if a[3] > 0 else [0.9, 0.1]
                       for a in audios])

  def prosody(self, audio, sr, text=""):
    f0 = float(audio[1] * 1000)
    return {"f0_hz": np.full(5, f0), "times_s": np.arange(5) * 0.04}


def clip(voice, pitch, text_id, happy=False, seconds=1.0):
  a = np.zeros(int(seconds * SR), np.float32)
  a[0], a[1], a[2], a[3] = voice / 10, pitch / 1000, text_id / 1000, happy
  return a


def prompts(n=6):
  out = []
  for i in range(n):
    voice = i % 2
    ctx = [Turn(voice, "earlier", clip(voice, 100 + 20 * i, 900), "neutral",
                0)]
    target = Turn(voice, f"hello number {i}", clip(voice, 100 + 20 * i, i),
                  "happy" if i % 3 == 0 else "neutral", 1)
    out.append(Prompt(f"c/{i}", "c", target, ctx, "friendly_chat"))
  return out


def test_identical_text_gives_cer_zero_and_known_errors_count():
  ps = prompts()
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  row = metrics.score_row("gt", inst, ps, [p.target.audio for p in ps], SR)
  s = metrics.summarize(row)
  assert s["cer"].value == 0.0 and s["wer"].value == 0.0
  # One utterance says "hello number X" with one wrong character.
  inst.texts[0] = "hellp number 0"
  row = metrics.score_row("gt", inst, ps, [p.target.audio for p in ps], SR)
  chars = sum(len(p.target.text) for p in ps)
  assert metrics.summarize(row)["cer"].value == pytest.approx(1 / chars)


def test_swapped_speaker_has_lower_similarity():
  ps = prompts()
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  own = metrics.score_row("own", inst, ps, [p.target.audio for p in ps], SR)
  swapped = [clip(1 - p.target.speaker, 100, i) for i, p in enumerate(ps)]
  other = metrics.score_row("swap", inst, ps, swapped, SR)
  assert np.all(own.speaker_similarity > other.speaker_similarity)
  assert metrics.summarize(own)["speaker_similarity"].value == \
      pytest.approx(1.0)
  d = metrics.compare(own, other)["speaker_similarity"]
  assert d.low > 0


def test_emotion_agreement_f0_continuity_duration_and_eos():
  ps = prompts(6)
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  audios = [clip(p.target.speaker, 100 + 20 * i, i,
                 happy=p.target.emotion == "happy", seconds=2.0)
            for i, p in enumerate(ps)]
  row = metrics.score_row("m", inst, ps, audios, SR,
                          eos=[True, True, False, True, True, True])
  s = metrics.summarize(row)
  assert s["emotion_agreement"].value == 1.0
  # The continuation keeps each prompt's pitch exactly: correlation 1.
  assert s["f0_continuity"].value == pytest.approx(1.0)
  assert s["duration_ratio"].value == pytest.approx(2.0)
  assert s["end_of_speech_rate"].value == pytest.approx(5 / 6)
  # Twice the true length: ended, but not in time.
  assert s["ended_in_time"].value == 0.0
  conf = metrics.confusion(row, 2)
  assert conf.trace() == 6


def test_an_empty_generation_counts_as_wrong_not_skipped():
  ps = prompts(4)
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  audios = [p.target.audio for p in ps]
  audios[1] = np.zeros((0,), np.float32)
  row = metrics.score_row("m", inst, ps, audios, SR)
  s = metrics.summarize(row)
  assert s["cer"].value == pytest.approx(
      len(ps[1].target.text) / sum(len(p.target.text) for p in ps))
  assert row.emotion_pred[1] == -1


def test_ended_in_time_needs_the_end_of_speech_and_a_fitting_length():
  ps = prompts(4)
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  # Truth lasts 1 s: 1.0 s and 1.3 s fit 0.7-1.4x, 0.5 s and 1.5 s do not.
  audios = [clip(p.target.speaker, 120, i, seconds=sec)
            for i, (p, sec) in enumerate(zip(ps, (1.0, 1.3, 0.5, 1.5)))]
  row = metrics.score_row("m", inst, ps, audios, SR,
                          eos=[True, False, True, True])
  np.testing.assert_array_equal(row.item("ended_in_time"), [1, 0, 0, 0])


def test_the_misses_name_the_emotion_heard_next_to_the_label():
  ps = prompts(4)   # labelled happy, neutral, neutral, happy
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  audios = [clip(p.target.speaker, 120, i, happy=h, seconds=sec)
            for i, (p, sec, h) in enumerate(zip(
                ps, (1.0, 1.3, 0.5, 1.5), (True, False, True, True)))]
  row = metrics.score_row("m", inst, ps, audios, SR,
                          eos=[True, False, True, True])
  missed = metrics.missed_in_time(row, ps, inst.emotion_names)
  assert [m["id"] for m in missed["misses"]] == [ps[1].id, ps[2].id,
                                                 ps[3].id]
  assert [(m["labelled"], m["heard"], m["ended"]) for m in missed["misses"]
          ] == [("neutral", "neutral", False), ("neutral", "happy", True),
                ("happy", "happy", True)]
  assert missed["misses"][2]["ratio"] == pytest.approx(1.5)
  assert missed["heard_in_another_emotion"] == 1
  # Heard as labelled: prompts 0, 1 and 3, of which only 0 ended in time.
  assert missed["in_time_when_heard_as_labelled"] == [1, 3]
  lines = report.missed_lines(missed)
  assert lines[0].startswith("**3 of 4 did not end in time.**")
  assert f"| {ps[2].id} | 1.00 | 0.50 | yes | neutral | happy |" in lines
  assert report.missed_lines({**missed, "misses": []}) == []


def test_misses_of_unlabelled_prompts_claim_no_emotion():
  ps = [dataclasses.replace(p, target=dataclasses.replace(p.target,
                                                          emotion=""))
        for p in prompts(2)]
  inst = ClipInstruments({i: p.target.text for i, p in enumerate(ps)})
  audios = [clip(p.target.speaker, 120, i, seconds=2.0)
            for i, p in enumerate(ps)]
  row = metrics.score_row("m", inst, ps, audios, SR, eos=[True, True])
  missed = metrics.missed_in_time(row, ps, inst.emotion_names)
  assert missed["missed"] == 2 and missed["labelled"] == 0
  assert missed["heard_in_another_emotion"] == 0
  lines = report.missed_lines(missed)
  assert lines[0] == "**2 of 2 did not end in time.**"
  assert f"| {ps[0].id} | 1.00 | 2.00 | yes | - | neutral |" in lines
