"""The launch scripts' dry runs print the exact commands they would run."""

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _run(script, *args):
  return subprocess.run([os.path.join(ROOT, "launch", script), *args],
                        capture_output=True, text=True, timeout=60)


def test_tpu_vm_dry_run_lists_the_whole_lifecycle():
  r = _run("tpu_vm.sh", "--name=n1", "--zone=z1", "--type=v5p-64",
           "--config=configs/medium.py", "--workdir=gs://b/run",
           "--config.train.steps=10", "--dry-run")
  assert r.returncode == 0, r.stderr
  lines = r.stdout.strip().splitlines()
  assert lines[0].startswith("gcloud compute tpus tpu-vm create n1")
  assert "--accelerator-type=v5p-64" in lines[0]
  assert "--version=v2-alpha-tpuv5" in lines[0]
  assert any("--worker=all" in l and "pip install -e .[tpu]" in l
             for l in lines)
  train = [l for l in lines if "csm_jax.train" in l]
  assert len(train) == 1 and "--worker=all" in train[0]
  assert "--config=configs/medium.py" in train[0]
  assert "--workdir=gs://b/run" in train[0]
  assert "--config.train.steps=10" in train[0]
  assert lines[-1].startswith("gcloud compute tpus tpu-vm delete n1")


def test_tpu_vm_queued_and_keep():
  r = _run("tpu_vm.sh", "--name=n1", "--zone=z1", "--type=v5e-16",
           "--config=c.py", "--workdir=w", "--queued", "--keep", "--dry-run")
  assert r.returncode == 0, r.stderr
  assert "queued-resources create n1-qr" in r.stdout
  assert "v2-alpha-tpuv5-lite" in r.stdout
  assert "delete" not in r.stdout


def test_tpu_vm_rejects_missing_arguments():
  r = _run("tpu_vm.sh", "--name=n1", "--dry-run")
  assert r.returncode == 2 and "--zone" in r.stderr


def test_gpu_single_host_and_slurm_dry_runs():
  r = _run("gpu.sh", "--config=configs/small.py", "--workdir=/w", "--dry-run")
  assert r.returncode == 0, r.stderr
  assert "python -m csm_jax.train --config=configs/small.py --workdir=/w" \
      in r.stdout
  r = _run("gpu.sh", "--nodes=4", "--gpus-per-node=8", "--partition=p",
           "--config=configs/medium.py", "--workdir=/w", "--dry-run")
  assert r.returncode == 0, r.stderr
  assert "#SBATCH --nodes=4" in r.stdout
  assert "#SBATCH --gpus-per-node=8" in r.stdout
  assert "#SBATCH --partition=p" in r.stdout
  assert "srun python -m csm_jax.train --config=configs/medium.py" in r.stdout
