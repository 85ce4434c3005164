"""The README's main job, scaled down: corpus -> codec -> CSM -> speech.

One fixture runs the debug config end to end on the tiny embedded corpus
(a few codec and CSM steps); the tests then export it, speak through the
CLI, check streaming against offline decoding and resume the run.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile

from csm_jax.config.presets import apply_overrides
from csm_jax.inference.loading import load_generator
from csm_jax.inference.generator import ContextTurn, Sampling
from csm_jax.training.run import train_and_evaluate
from tests.e2e.tiny_run import small_instruments

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_default_pipeline_builds_everything_and_trains(run):
  c, wd, out = run
  assert out["step"] == 4 and np.isfinite(out["loss"])
  assert "eval/loss" in out
  assert os.path.exists(os.path.join(wd, "codec", "export", "weights.npz"))
  assert os.path.exists(os.path.join(wd, "tokenizer.model"))
  rows = [json.loads(l) for l in open(os.path.join(wd, "metrics.jsonl"))]
  assert any("loss/cb0" in r for r in rows)


def test_resume_continues_the_run(run):
  c, wd, _ = run
  c2 = apply_overrides(c.copy_and_resolve_references(), "train.steps=6")
  out = train_and_evaluate(c2, wd)
  assert out["step"] == 6


def test_generate_cli_writes_a_wav_and_streaming_matches_offline(run, tmp_path):
  _, wd, _ = run
  wav = str(tmp_path / "out.wav")
  r = subprocess.run(
      [sys.executable, "-m", "csm_jax.generate", f"--checkpoint={wd}",
       "--text=Good morning, how are you?", "--speaker=1", f"--out={wav}",
       "--max_seconds=1.0", "--frames_per_call=3"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode == 0, r.stderr[-3000:]
  audio, sr = soundfile.read(wav)
  gen = load_generator(wd)
  assert sr == gen.codec.sample_rate
  # No end of speech before 0.5 s: the streaming check always has frames.
  s = Sampling(max_seconds=1.0, min_seconds=0.5, frames_per_call=2, seed=3)
  ctx = [ContextTurn(0, "Hello there.", audio=np.sin(np.arange(8000) / 9.0) * .3)]
  chunks = list(gen.stream("Fine, thanks.", 1, ctx, s))
  codes = np.concatenate([c.codes for c in chunks])
  streamed = np.concatenate([c.audio for c in chunks])
  assert len(codes) >= round(0.5 * gen.codec.frame_rate)
  offline = gen.codec.decode(codes)
  np.testing.assert_allclose(streamed, offline, atol=1e-4)
  assert len(streamed) == len(codes) * gen.codec.hop
  assert chunks[0].elapsed_s > 0


def test_generation_builds_no_optimizer_state(run, tmp_path):
  """Loading to speak, from a workdir or an export, restores parameters
  only: no optimizer is constructed and no training module is imported."""
  from csm_jax.store.export import export
  _, wd, _ = run
  exported = str(tmp_path / "export")
  export(wd, exported)
  probe = textwrap.dedent("""
      import sys
      import optax
      def refuse(*args, **kwargs):
        raise AssertionError("an optimizer was built")
      optax.adamw = optax.adam = optax.chain = refuse
      from csm_jax.inference.loading import load_generator
      for d in sys.argv[1:]:
        gen = load_generator(d)
        assert gen.codec is not None and gen.tokenizer is not None
      loaded = [m for m in sys.modules if m.startswith("csm_jax.training")]
      assert not loaded, loaded
      print("loaded without training state")
  """)
  r = subprocess.run([sys.executable, "-c", probe, wd, exported], cwd=ROOT,
                     capture_output=True, text=True, timeout=600,
                     env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode == 0, r.stderr[-3000:]
  assert "loaded without training state" in r.stdout


def test_evaluate_writes_the_report_with_its_five_rows(run, tmp_path):
  """The quick suite on the tiny run: instruments trained on the tiny
  corpus, the report's rows (the codec's floor among them), intervals,
  plots and samples."""
  from csm_jax.eval.evaluate import evaluate
  _, wd, _ = run
  out = str(tmp_path / "eval")
  data = evaluate(wd, out, "quick", n_prompts=3,
                  instrument_overrides=small_instruments())
  assert set(data["rows"]) == {"ground_truth", "codec", "codec_floor",
                               "teacher_forced", "model"}
  for row in data["rows"].values():
    cer = row["cer"]
    assert cer["low"] <= cer["value"] <= cer["high"]
  assert data["instruments"]["recognizer"]["cer"] >= 0
  for name in ("report.md", "report.json", "metrics.png", "f0_contours.png",
               "emotion_confusion.png", "speaker_similarity.png",
               "spectrograms.png", "samples/00_model.wav"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  md = open(os.path.join(out, "report.md")).read()
  assert "pragmatic_success" in md and "ground_truth" in md


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
  from csm_jax.store.export import export
  _, wd, _ = run
  out = str(tmp_path_factory.mktemp("evalexport") / "export")
  export(wd, out, dtype="float32")
  return out


def _copy_without(src, dst, name):
  import shutil
  shutil.copytree(src, dst)
  path = os.path.join(dst, name)
  shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
  return dst


@pytest.mark.parametrize("missing", ["tokenizer.model", "codec"])
def test_evaluate_names_what_the_checkpoint_lacks(exported, tmp_path, missing):
  from csm_jax.eval.evaluate import evaluate
  from csm_jax.eval.suite import EvaluationError
  broken = _copy_without(exported, str(tmp_path / "broken"), missing)
  with pytest.raises(EvaluationError, match=r"--checkpoint: .*"
                     + missing.split(".")[0]):
    evaluate(broken, str(tmp_path / "eval"), "quick", n_prompts=2)


def test_evaluate_refuses_a_comparison_with_another_codec(exported, tmp_path):
  import shutil
  import jax
  from flax import nnx
  from csm_jax.codec.io import load_codec, save_codec
  from csm_jax.eval.evaluate import evaluate
  from csm_jax.eval.suite import EvaluationError
  other = str(tmp_path / "other")
  shutil.copytree(exported, other)
  codec, c = load_codec(os.path.join(other, "codec"))
  graphdef, state = nnx.split(codec)
  # Same shapes, other weights: the rates and levels alone cannot tell.
  state = jax.tree.map(lambda x: x * 1.01, state)
  save_codec(os.path.join(other, "codec"), nnx.merge(graphdef, state), c)
  with pytest.raises(EvaluationError, match="--compare: .*another codec"):
    evaluate(exported, str(tmp_path / "eval"), "quick", compare=other,
             n_prompts=2)


def test_an_empty_prompt_set_is_refused(run):
  from csm_jax.eval.prompts import PromptSetError, build_prompts
  c, _, _ = run
  with pytest.raises(PromptSetError, match="--prompts"):
    build_prompts(c, 0, 16000)
  # No context turns: no prompt has a reference of its speaker's voice.
  with pytest.raises(PromptSetError, match="nothing to evaluate"):
    build_prompts(c, 4, 16000, context_turns=0)


def test_levels_suite_scores_quality_and_speed_per_level_count(run, tmp_path):
  """Each k gets the model's and the codec's k-level scores and a speed."""
  from csm_jax.eval.levels import levels_curve
  _, wd, _ = run
  out = str(tmp_path / "levels")
  gen = load_generator(wd)
  data = levels_curve(wd, out, levels=[gen.n, 1], n_prompts=2, repeats=2,
                      instrument_overrides=small_instruments())
  assert [p["levels"] for p in data["points"]] == [1, gen.n]
  for p in data["points"]:
    assert set(p["model"]) >= {"cer", "end_of_speech_rate"}
    assert "end_of_speech_rate" not in p["codec"]
    assert p["ms_per_frame"]["value"] > 0
    assert p["ms_per_frame"]["low"] <= p["ms_per_frame"]["value"]
  for name in ("levels.json", "levels.md", "levels_quality.png",
               "levels_speed.png"):
    assert os.path.getsize(os.path.join(out, name)) > 0, name
  md = open(os.path.join(out, "levels.md")).read()
  assert md.count("\n| 1 |") == 1 and f"\n| {gen.n} |" in md


def test_levels_suite_names_a_level_count_the_model_lacks(run, tmp_path):
  from csm_jax.eval.levels import check_levels, default_levels
  from csm_jax.eval.suite import EvaluationError
  assert default_levels(8) == [1, 2, 4, 8]
  assert default_levels(6) == [1, 2, 4, 6]
  assert check_levels([3, 1, 3], 8) == [1, 3]
  with pytest.raises(EvaluationError, match="--levels: 9: .* 8 codebooks"):
    check_levels([1, 9], 8)
  with pytest.raises(EvaluationError, match="--levels: 0"):
    check_levels([0], 8)


def test_codec_curve_pairs_the_last_checkpoint_with_the_floor(run, tmp_path):
  """Every kept codec checkpoint scored, the floor beside them, and the last
  checkpoint minus the floor paired on the same prompts: its point value
  is the difference of the two rows' CERs (each a ratio of sums)."""
  from csm_jax.eval.codec_curve import codec_curve
  _, wd, _ = run
  out = str(tmp_path / "codec")
  data = codec_curve(wd, out, n_prompts=3, log=lambda _: None,
                     instrument_overrides=small_instruments(),
                     compare=[os.path.join(wd, "codec")])
  steps = [p["step"] for p in data["points"]]
  assert steps == sorted(steps) and steps[-1] == 6
  (floor,) = data["references"].values()
  paired = data["codec_minus_floor"]
  assert paired["step"] == steps[-1]
  assert paired["cer"]["value"] == pytest.approx(
      data["points"][-1]["cer"]["value"] - floor["cer"]["value"], abs=1e-9)
  assert paired["cer"]["low"] <= paired["cer"]["value"] <= \
      paired["cer"]["high"]
  # The run compared with itself: a paired difference of exactly zero.
  (versus,) = data["compared_minus_run"].values()
  assert versus["cer"] == {**versus["cer"], "value": 0.0, "low": 0.0,
                           "high": 0.0}
  assert os.path.getsize(os.path.join(out, "codec_curve.png")) > 0
