"""The generation benchmark runs end to end and reports consistent figures."""

import math

from csm_jax.bench.generate_bench import bench_generate, weight_bytes_per_frame
from csm_jax.model.csm import CSM
from flax import nnx
from tests.foundation.tiny import tiny_config


def test_bench_generate_reports_both_layouts():
  c = tiny_config()
  r = bench_generate(c, frames=4, prompt_rows=8, top_k=4,
                     bandwidth_bytes=1 << 24, repeats=3, batches=(1, 2),
                     draft=1)
  for k in ("ms_per_frame_median", "stacked_ms_per_frame", "floor_ms_per_frame",
            "first_chunk_latency_ms", "measured_bandwidth_gb_s"):
    assert math.isfinite(r[k]) and r[k] > 0, k
  assert r["weight_bytes_per_frame"] == weight_bytes_per_frame(
      CSM(c.model, nnx.Rngs(params=0)))
  assert math.isclose(r["ratio_to_floor"],
                      r["ms_per_frame_median"] / r["floor_ms_per_frame"])
  assert math.isclose(r["speedup_vs_stacked"],
                      r["stacked_ms_per_frame"] / r["ms_per_frame_median"])
  # One call of the Generator's 4-frame chunk per repeat.
  assert r["repeats"] == 3 and r["frames_per_repeat"] == 4
  assert r["ms_per_frame_spread"] >= 0
  assert math.isclose(r["batch1_frames_per_s"], 1e3 / r["ms_per_frame_median"])
  assert r["batch1_ratio_to_batch1"] == 1.0
  # The other ratios are medians over runs timed in alternation with ours
  # (hardware.timed_paired), each with its spread.
  for key in ("batch2_ratio", "speculative_ratio", "speedup_vs_torch_eager",
              "speedup_vs_torchtune_eager"):
    assert r[f"{key}_spread"] >= 0, key
  assert 0 < r["batch2_ratio_to_batch1"] < 2 * 2
  assert 0 < r["speculative_ratio_to_plain"] < 20
  # The machine's limits, measured in the same run.
  assert math.isclose(r["batch2_of_limit"], r["batch2_ratio_to_batch1"]
                      / r["batch2_products_limit"])
  assert r["speculative_verify_pass_steps"] > 0
  assert r["speculative_ratio_limit"] > 0
  # The tiny decoder has one block: its early exit is the decoder itself,
  # so every draft is accepted and a frame takes ceil(3 / 2) passes.
  assert r["speculative_acceptance"] == 1.0
  assert r["speculative_passes_per_frame"] == 2.0
  # The released CSM's eager PyTorch loop at the same dims, same run (torch
  # comes with the interop extra, which the README's test command installs).
  for key in ("torch_eager", "torchtune_eager"):
    assert r[f"{key}_ms_per_frame"] > 0, key
    assert r[f"speedup_vs_{key}"] > 0, key


def test_the_torch_reference_loop_fills_its_caches_as_it_decodes():
  from csm_jax.bench import torch_reference
  c = tiny_config()
  for stack in ("lean", "torchtune"):
    r = torch_reference.time_frames(c.model, frames=3, prompt_rows=5,
                                    repeats=2, top_k=4, stack=stack)
    assert r["frames_per_repeat"] == 3 and r["repeats"] == 2
    assert math.isfinite(r["frame_s"]) and r["frame_s"] > 0
  # One row per frame after the prompt: a cache shorter than the prompt
  # plus every frame fails, so the loop really appends each frame.
  import pytest
  with pytest.raises(RuntimeError):
    torch_reference.time_frames(c.model, frames=3, prompt_rows=5, repeats=2,
                                top_k=4, max_len=5 + 3)


def test_paired_timing_alternates_and_takes_the_median_ratio(monkeypatch):
  """Two workloads alternate (the first swapping every round) and the
  ratio is the median of the rounds' ratios, so a round disturbed for
  both sides alike leaves it unchanged."""
  from csm_jax.parallel import hardware
  calls = []
  # Each workload's duration is read from a fake clock: base takes 1 unit,
  # other 3, except round 2 where a burst of load makes both 10x slower.
  durations = {"base": [1, 1, 10, 1, 1], "other": [3, 3, 30, 3, 3]}
  now = [0.0]

  def work(name):
    def fn():
      calls.append(name)
      now[0] += durations[name][sum(c == name for c in calls) - 1]
    return fn

  monkeypatch.setattr(hardware.time, "perf_counter", lambda: now[0])
  p = hardware.timed_paired(work("base"), work("other"), rounds=5)
  assert calls == ["base", "other", "other", "base", "base", "other",
                   "other", "base", "base", "other"]
  assert p.ratios == (3.0,) * 5 and p.ratio == 3.0
  assert p.base.median == 1 and p.other.median == 3 and p.base.n == 5
  assert p.base.spread == 9.0  # the burst shows in each side's own spread


def test_product_limits_from_the_products_timings(monkeypatch):
  """The limits' arithmetic, on timings chosen for it: the backbone costs
  10 at any rows, a decoder step 1 at one row and 2 at two or more."""
  from csm_jax.bench import generate_bench
  c = tiny_config()
  model = CSM(c.model, nnx.Rngs(params=0))
  calls = []

  def chain(shapes, rows, passes=1, dtype=None):  # the backbone's first
    del dtype
    backbone = not calls
    calls.append((shapes, rows, passes))
    return {m: 10.0 if backbone else passes * (1.0 if m == 1 else 2.0)
            for m in rows}

  monkeypatch.setattr(generate_bench, "measured_product_chain", chain)
  out = generate_bench.product_limits(model, batches=(1, 4), draft=2)
  n = model.n_codebooks
  # Batch 4: 4 frames for (10 + 2n) instead of 4 x (10 + n).
  assert math.isclose(out["limit_batch4_ratio"], 4 * (10 + n) / (10 + 2 * n))
  assert out["verify_pass_steps"] == 2.0  # 3 rows cost 2 one-row steps
  depth = model.decoder.spec.depth
  rounds = -(-(n - 1) // 3)
  assert math.isclose(out["ratio_at_full_acceptance"],
                      (10 + 1 + rounds * (2 + 2 / depth)) / (10 + n))
  # One row, the batches and the verification pass's rows are timed; the
  # backbone's products end in codebook 0's head, the decoder's in a head.
  assert calls[0][1] == [1, 3, 4] and calls[1][1] == [1, 3, 4]
  # The decoder's products run N passes over the same weights, as a frame.
  assert calls[0][2] == 1 and calls[1][2] == n
  assert len(calls[0][0]) == 7 * model.backbone.spec.depth + 1
  assert calls[0][0][-1] == (model.backbone.spec.width, model.audio_vocab)
  assert len(calls[1][0]) == 7 * depth + 2
