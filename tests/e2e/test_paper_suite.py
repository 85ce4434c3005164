"""The results page (``evaluate --suite=paper``) on the tiny trained run:
every section is on the page, its figures are the run's own, and another
seed gives other figures."""

import json
import os
import subprocess
import sys

from csm_jax.eval import paper
from csm_jax.eval.paper_page import publish
from csm_jax.eval.stats import Estimate
from csm_jax.inference.loading import load_generator
from tests.e2e.tiny_run import ROOT, small_instruments

# Experiment 2 trains on the long corpus (12-20 turns), which this test
# does not build: its section is left out by the budget, and says so.
TINY = paper.Budget(prompts=3, conversation_turns=2, probe_steps=2,
                    memory_steps=0, conversations=1, prosody_steps=1,
                    experiment3_prompts=3, speed_texts=2)
HEADINGS = ("## What ran shorter than the plan",
            "## The model on held-out prompts",
            "## The plan's success criteria",
            "## Experiment 1: do voice tokens carry meaning?",
            "## Experiment 2: does prosodic memory keep a character?",
            "## Experiment 3: emotional dynamics with the prosody stream")


def _page(wd, out, seed, sections=paper.SECTIONS, generator=None):
  r = paper.run_paper(wd, out, seed=seed, budget=TINY, sections=sections,
                      instrument_overrides=small_instruments(),
                      generator=generator,
                      command=f"python -m csm_jax.evaluate --suite=paper "
                      f"--checkpoint={wd} --seed={seed}")
  with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
    return r, f.read()


def test_the_page_has_every_section_with_the_runs_figures(run, tmp_path):
  _, wd, _ = run
  out = str(tmp_path / "paper")
  # The run's generator loaded once for both pages, as a notebook keeps it:
  # the second page reuses the programs the first compiled.
  gen = load_generator(wd)
  r, md = _page(wd, out, seed=0, generator=gen)
  for h in HEADINGS:
    assert h in md, h
  s = r["sections"]
  # Figures on the page are the sections' own.
  cer = s["model"]["rows"]["model"]["cer"]
  assert f"| model | {Estimate(**cer)} |" in md
  probe = s["experiment1"]["accuracy"]["probe on codec tokens"]
  assert f"| probe on codec tokens | {Estimate(**probe)} |" in md
  assert "text trigram + probe" in md
  rtf = s["speed"]["real_time_factor"]
  assert f"real-time factor {Estimate(**rtf)}" in md
  # Experiment 3 trains its pair from the run (the prosody stream added to
  # a model without it) and leaves the listening pairs ready to serve.
  e3 = s["experiment3"]
  assert "skipped" not in e3, e3.get("skipped")
  assert os.path.exists(os.path.join(e3["listening_pairs"], "pairs.json"))
  assert "non-tie judgments" in md
  # A section left out is on the page with the reason.
  assert "**experiment2 did not run**: left out of this run's budget" in md
  assert "Not run: left out of this run's budget (--train_steps=0)" in md
  # Provenance: the commit and the command that remakes the page.
  saved = json.load(open(os.path.join(out, "results.json")))
  assert saved["provenance"]["seed"] == 0
  assert saved["provenance"]["code"].get("commit") or \
      saved["provenance"]["code"].get("version")
  assert "--suite=paper" in md
  # Published: the page and the plots it shows, links rewritten.
  page = str(tmp_path / "docs" / "results.md")
  copied = publish(out, page, str(tmp_path / "docs" / "img" / "results"))
  assert "model_metrics.png" in copied
  assert "](img/results/model_metrics.png)" in open(page).read()
  # Another seed: other figures, from the run.
  other, md1 = _page(wd, str(tmp_path / "seed1"), seed=1,
                     sections=("model",), generator=gen)
  mine = s["model"]["rows"]["model"]
  theirs = other["sections"]["model"]["rows"]["model"]
  assert any(mine[m] != theirs[m] for m in ("cer", "speaker_similarity"))
  assert f"| model | {Estimate(**theirs['cer'])} |" in md1


def test_the_command_names_an_unknown_section(run, tmp_path):
  _, wd, _ = run
  r = subprocess.run(
      [sys.executable, "-m", "csm_jax.evaluate", "--suite=paper",
       f"--checkpoint={wd}", f"--out={tmp_path / 'p'}",
       "--sections=model,experiment9"],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=ROOT))
  assert r.returncode != 0
  assert "unknown section 'experiment9'" in r.stderr
  assert "Traceback" not in r.stderr
