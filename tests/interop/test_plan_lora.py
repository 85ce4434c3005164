"""LoRA's memory at CSM-1B's shape, from the compiled step (slow: ~2 min).

``python -m csm_jax.plan``'s library on one fake 16 GB / 80 GB GPU: a rank-16
LoRA fine-tune at batch 1 fits the 16 GB device, and its optimizer state is
a small fraction of full fine-tuning's (AdamW's two f32 moments of every
parameter).
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.mark.slow
def test_lora_plan_fits_16gb(tmp_path):
  report = tmp_path / "plan.json"
  p = subprocess.run(
      [sys.executable, "-m", "csm_jax.plan", "--config=configs/csm_1b.py",
       "--topology=gpu-1", "--device_memory=16GB,80GB",
       "--config.train.lora.rank=16", "--config.train.lora.targets=attn,mlp",
       "--config.data.batch_size=1", "--config.model.remat=full",
       "--config.model.param_dtype=bfloat16", f"--json={report}"],
      cwd=ROOT, capture_output=True, text=True, timeout=1200,
      env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert p.returncode == 0, p.stderr[-2000:]
  assert "on one 16.00 GiB device: FITS" in p.stdout
  import json  # pylint: disable=g-import-not-at-top
  r = json.loads(report.read_text())
  full_params = 1_552_791_552
  assert r["params"]["model"] < full_params / 100
  # Full fine-tuning keeps 2 x 4 bytes of AdamW moments per parameter.
  assert r["per_chip"]["optimizer_state"] < 0.02 * 8 * full_params
  assert r["fits_on"] == {"16.00 GiB": True, "80.00 GiB": True}
