"""Evaluate a CSM: ``python -m csm_jax.evaluate --checkpoint=RUN --out=DIR``.

  --suite=quick        12 held-out prompts: CER/WER, end of speech, speaker
                       and emotion consistency, F0 continuity (minutes)
  --suite=full         every held-out prompt, identity over 10 generated
                       turns, adversarial contexts, a long-form response
  --suite=experiment1  the research plan's Experiment 1: next-word probe on
                       codec tokens against three baselines
  --suite=experiment2  the research plan's Experiment 2 (prosodic memory):
                       trains seven memory configurations from RUN on the
                       long corpus at equal compute (--train_steps of the
                       dual memory), replays held-out 12-20 turn
                       conversations, and scores character consistency
                       per turn against the no-memory model
  --suite=experiment3  the research plan's Experiment 3 (emotional dynamics):
                       responses along the corpus's emotion arcs by the model
                       with the prosody stream (told the emotion, and free)
                       against --compare=RUN2, the model without it
  --suite=curve        the quick suite's headline at every kept checkpoint
                       of a workdir, plotted against the step
  --suite=codec_curve  the codec's ceiling (CER, WER, speaker similarity of
                       its resynthesis) at every checkpoint of the codec
                       run (RUN/codec, --codec_run, or RUN itself), beside
                       --compare_codecs=W1,W2 and the floor: k-means mel
                       RVQ + Griffin-Lim at the same bit rate
  --suite=levels       quality (model and codec resynthesis: CER, WER,
                       speaker similarity, end of speech) and speed (time
                       to first audio, ms/frame) against the number of
                       codebooks generated (--levels, default 1, 2, 4, ...
                       and all)
  --suite=paper        the results page: the full suite, speed, and
                       Experiments 1-3 (each variant trained from RUN) in
                       one DIR/results.md with every table, its intervals,
                       the plots, the listening pairs, and the commit,
                       configs and seeds that remake it (about an hour on
                       2 cores; --publish=docs/results.md copies the page
                       and its plots into the docs)
  --compare=RUN2       paired differences against a second run (same codec)
  --recognizer=DIR     quick/full: score with a local Whisper or CTC model
                       directory instead of the corpus-trained recognizer
  --speaker_model=resemblyzer|DIR
                       quick/full: Resemblyzer's shipped speaker encoder,
                       or a local x-vector model directory

RUN is a training workdir or an export. The recognizer, speaker encoder
and emotion classifier are trained on the run's corpus the first time
(about 8 minutes on 2 CPU cores for the embedded corpus, then cached by
the corpus's hash) and report their own
accuracy on held-out ground truth. Writes DIR/report.json, DIR/report.md,
PNG plots and sample wavs; prints the headline rows (ground truth, codec
resynthesis, model). Definitions: docs/evaluation.md.
"""

from absl import app, flags

from csm_jax.cli import errors as cli_errors

_CKPT = flags.DEFINE_string("checkpoint", None,
                            "Training workdir or export to evaluate.")
_OUT = flags.DEFINE_string("out", None, "Report directory (default: "
                           "<checkpoint>/eval/<suite>).")
_SUITE = flags.DEFINE_enum(
    "suite", "quick", ["quick", "full", "experiment1", "experiment2",
                       "experiment3", "curve", "codec_curve", "levels",
                       "paper"],
    "What to run.")
_COMPARE = flags.DEFINE_string(
    "compare", None, "A second run for paired differences (experiment3: the "
    "model without the prosody stream).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling and bootstrap seed.")
_PROMPTS = flags.DEFINE_integer("prompts", None, "Override the number of "
                                "held-out prompts of the suite.")
_STEP = flags.DEFINE_integer("step", None, "A workdir's checkpoint step "
                             "(default: the latest), for learning curves.")
_CODEC_RUN = flags.DEFINE_string(
    "codec_run", None, "codec_curve: the codec training workdir (default: "
    "<checkpoint>/codec, where the README's job trains it).")
_COMPARE_CODECS = flags.DEFINE_list(
    "compare_codecs", None, "codec_curve: other codec training workdirs, "
    "each drawn as its own curve beside the run's codec (the floor, a "
    "k-means mel RVQ with Griffin-Lim at the same bit rate, is always "
    "drawn)")
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", 200, "experiment2: training steps of the dual memory; "
    "every configuration gets the same training FLOPs.")
_VARIANTS = flags.DEFINE_list(
    "variants", None, "experiment2: the configurations to run (default: "
    "all seven; no_memory, the baseline, is always included).")
_CONVERSATIONS = flags.DEFINE_integer(
    "conversations", None, "experiment2: at most this many held-out "
    "conversations (default: all with enough turns).")
_LEVELS = flags.DEFINE_list(
    "levels", None, "levels: the codebook counts to compare (default 1, 2, "
    "4, ... and the model's all).")
_SECTIONS = flags.DEFINE_list(
    "sections", None, "paper: the sections to run (default all: model, "
    "speed, experiment1, experiment2, experiment3).")
_PROSODY_STEPS = flags.DEFINE_integer(
    "prosody_steps", 300, "paper: Experiment 3's training steps of each "
    "model (with and without the prosody stream) from RUN.")
_PROBE_STEPS = flags.DEFINE_integer(
    "probe_steps", 1500, "paper: Experiment 1's training steps of each "
    "probe.")
_PUBLISH = flags.DEFINE_string(
    "publish", None, "paper: also copy DIR/results.md to this page (e.g. "
    "docs/results.md) and the plots it shows beside it, in img/results/.")
_RECOGNIZER = flags.DEFINE_string(
    "recognizer", "corpus", "quick/full: 'corpus' (the recognizer trained "
    "on the run's corpus) or a local Whisper or CTC model directory "
    "(save_pretrained; nothing is downloaded). docs/evaluation.md.")
_SPEAKER_MODEL = flags.DEFINE_string(
    "speaker_model", "corpus", "quick/full: 'corpus', 'resemblyzer' (the "
    "weights its wheel ships) or a local x-vector model directory.")
flags.mark_flag_as_required("checkpoint")


def _parse_levels(values):
  if not values:
    return None
  try:
    return [int(v) for v in values]
  except ValueError:
    raise app.UsageError(f"--levels: integers, got {','.join(values)}")


def _paper(out):
  # pylint: disable=g-import-not-at-top
  import os
  import sys
  from csm_jax.eval import paper
  from csm_jax.eval.paper_page import publish
  budget = paper.Budget(
      prompts=_PROMPTS.value, probe_steps=_PROBE_STEPS.value,
      memory_steps=_TRAIN_STEPS.value, conversations=_CONVERSATIONS.value
      if _CONVERSATIONS.value is not None else paper.Budget.conversations,
      prosody_steps=_PROSODY_STEPS.value)
  command = " ".join(["python -m csm_jax.evaluate"] + sys.argv[1:])
  paper.run_paper(_CKPT.value, out, seed=_SEED.value, budget=budget,
                  sections=tuple(_SECTIONS.value or paper.SECTIONS),
                  command=command)
  print(f"results: {os.path.join(out, 'results.md')}")
  if _PUBLISH.value:
    images = os.path.join(os.path.dirname(os.path.abspath(_PUBLISH.value)),
                          "img", "results")
    publish(out, _PUBLISH.value, images)
    print(f"published: {_PUBLISH.value} (plots in {images})")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  # pylint: disable=g-import-not-at-top
  import os
  from csm_jax.cli.logs import quiet_library_logs
  quiet_library_logs()
  out = _OUT.value or os.path.join(_CKPT.value, "eval", _SUITE.value)
  if _SUITE.value not in ("quick", "full"):
    for flag in (_RECOGNIZER, _SPEAKER_MODEL):
      if flag.value != "corpus":
        raise app.UsageError(f"--{flag.name}: the {_SUITE.value} suite "
                             "scores with the corpus-trained instruments; "
                             "plugged ones are for quick and full")
  if _SUITE.value == "paper":
    _paper(out)
    return
  if _SUITE.value == "experiment1":
    from csm_jax.eval.experiment1 import run_experiment1
    run_experiment1(_CKPT.value, out, seed=_SEED.value)
    return
  if _SUITE.value == "experiment2":
    from csm_jax.eval.experiment2 import run_experiment2
    run_experiment2(_CKPT.value, out, steps=_TRAIN_STEPS.value,
                    seed=_SEED.value, variants=_VARIANTS.value,
                    max_conversations=_CONVERSATIONS.value)
    return
  if _SUITE.value == "experiment3":
    from csm_jax.eval.experiment3 import run_experiment3
    run_experiment3(_CKPT.value, out, _COMPARE.value, seed=_SEED.value,
                    n_prompts=_PROMPTS.value)
    return
  if _SUITE.value == "codec_curve":
    from csm_jax.eval.codec_curve import codec_curve
    codec_curve(_CKPT.value, out, codec_run=_CODEC_RUN.value,
                n_prompts=_PROMPTS.value or 12, seed=_SEED.value,
                compare=_COMPARE_CODECS.value or ())
    print(f"codec curve: {os.path.join(out, 'codec_curve.png')}")
    return
  if _SUITE.value == "curve":
    from csm_jax.eval.curve import learning_curve
    learning_curve(_CKPT.value, out, n_prompts=_PROMPTS.value or 12,
                   seed=_SEED.value)
    print(f"curve: {os.path.join(out, 'curve.png')}")
    return
  if _SUITE.value == "levels":
    from csm_jax.eval.levels import levels_curve
    levels_curve(_CKPT.value, out, levels=_parse_levels(_LEVELS.value),
                 n_prompts=_PROMPTS.value or 12, seed=_SEED.value)
    print(f"levels: {os.path.join(out, 'levels.md')}")
    return
  from csm_jax.eval.evaluate import evaluate
  evaluate(_CKPT.value, out, _SUITE.value, _COMPARE.value, seed=_SEED.value,
           n_prompts=_PROMPTS.value, step=_STEP.value,
           recognizer=_RECOGNIZER.value, speaker_model=_SPEAKER_MODEL.value)


if __name__ == "__main__":
  cli_errors.run(main)
