#!/usr/bin/env bash
# Launch csm-jax training on GPUs: one host, or several nodes through SLURM.
#
#   launch/gpu.sh --config=configs/small.py --workdir=/data/runs/small [--dry-run]
#   launch/gpu.sh --nodes=4 --gpus-per-node=8 --partition=a100 \
#       --config=configs/medium.py --workdir=/shared/runs/medium [--dry-run]
#
# One host: a single process sees every local GPU. Several nodes: sbatch runs
# one process per node; jax.distributed.initialize() reads SLURM's variables.
# --dry-run prints the commands (and the batch script) instead of running them.
set -euo pipefail

NODES=1 GPUS=8 PARTITION="" CONFIG="" WORKDIR="" TIME="24:00:00" DRY=0 EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --nodes=*) NODES="${arg#*=}" ;;
    --gpus-per-node=*) GPUS="${arg#*=}" ;;
    --partition=*) PARTITION="${arg#*=}" ;;
    --config=*) CONFIG="${arg#*=}" ;;
    --workdir=*) WORKDIR="${arg#*=}" ;;
    --time=*) TIME="${arg#*=}" ;;
    --dry-run) DRY=1 ;;
    --config.*) EXTRA+=("$arg") ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
if [[ -z "$CONFIG" || -z "$WORKDIR" ]]; then
  echo "missing --config=... or --workdir=... (see --help)" >&2; exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TRAIN="python -m csm_jax.train --config=$CONFIG --workdir=$WORKDIR ${EXTRA[*]:-}"
# XLA flags that help NCCL collectives overlap with compute on GPUs.
XLA="--xla_gpu_enable_latency_hiding_scheduler=true"

if (( NODES == 1 )); then
  CMD="cd $ROOT && XLA_FLAGS='$XLA' $TRAIN"
  if (( DRY )); then echo "$CMD"; else echo "+ $CMD" >&2; eval "$CMD"; fi
  exit 0
fi

SCRIPT="#!/usr/bin/env bash
#SBATCH --job-name=csm-jax
#SBATCH --nodes=$NODES
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=$GPUS
#SBATCH --time=$TIME
${PARTITION:+#SBATCH --partition=$PARTITION}
#SBATCH --output=$WORKDIR/slurm-%j.log
cd $ROOT
export XLA_FLAGS='$XLA'
srun $TRAIN"
if (( DRY )); then
  echo "sbatch <<'SLURM'"; echo "$SCRIPT"; echo "SLURM"
else
  mkdir -p "$WORKDIR"; echo "$SCRIPT" | sbatch
fi
