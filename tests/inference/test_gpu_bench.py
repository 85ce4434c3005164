"""The one-chip benchmark script runs at debug dims and keeps its JSON whole."""

import json
import math

import pytest

from csm_jax.bench import gpu_bench


# Compiles a trainer and five decoding variants: minutes on 2 shared cores.
@pytest.mark.slow
def test_gpu_bench_debug_dims_writes_every_section(tmp_path):
  path = tmp_path / "gpu.json"
  r = gpu_bench.bench_gpu("debug", json_path=str(path), draft=2)
  assert json.loads(path.read_text())["dims"] == "debug"
  for name in ("generate", "train", "codec"):
    assert "error" not in r[name], r[name]
    assert r[name + "_wall_s"] > 0
  g = r["generate"]
  for k in ("ms_per_frame_median", "real_time_factor", "ratio_to_floor",
            "batch8_frames_per_s", "speculative_ms_per_frame",
            "time_to_first_audio_ms", "codec_first_chunk_ms"):
    assert math.isfinite(g[k]) and g[k] > 0, k
  assert g["compute_dtype"] == "float32"  # CPU decodes in f32
  assert g["time_to_first_audio_ms"] > g["first_chunk_latency_ms"]
  assert math.isclose(g["batch8_real_time_factor"] * g["batch8_ratio_to_batch1"],
                      g["real_time_factor"])
  assert 0 <= g["speculative_acceptance"] <= 1
  assert r["train"]["step_ms_median"] > 0
  assert r["codec"]["encode_rtf"] > 0 and r["codec"]["decode_rtf"] > 0


def test_a_failing_section_is_recorded_and_the_rest_still_run(tmp_path,
                                                              monkeypatch):
  def broken(*args, **kwargs):
    raise RuntimeError("out of memory")

  monkeypatch.setattr(gpu_bench, "_generation", broken)
  monkeypatch.setattr(gpu_bench, "bench_train", lambda c, **kw: {"ok": 1})
  monkeypatch.setattr(gpu_bench, "measure_rtf", lambda c, **kw: {"rtf": 2})
  path = tmp_path / "gpu.json"
  r = gpu_bench.bench_gpu("debug", json_path=str(path))
  assert r["generate"]["error"] == "RuntimeError: out of memory"
  assert r["train"] == {"ok": 1} and r["codec"]["rtf"] == 2
  assert json.loads(path.read_text())["codec"]["rtf"] == 2
