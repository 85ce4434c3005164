#!/usr/bin/env bash
# Launch csm-jax training on a Cloud TPU VM slice (all workers at once).
#
#   launch/tpu_vm.sh --name=csm-medium --zone=us-east5-a --type=v5p-64 \
#       --config=configs/medium.py --workdir=gs://BUCKET/runs/medium [--dry-run]
#
# Steps: create the slice (or a queued resource with --queued), copy this
# checkout to every worker, install it, run the trainer on --worker=all with
# logs streamed here, and delete the slice afterwards unless --keep.
# --dry-run prints every command instead of running it.
set -euo pipefail

NAME="" ZONE="" TYPE="" CONFIG="" WORKDIR="" PROJECT="" VERSION=""
QUEUED=0 KEEP=0 DRY=0 EXTRA=()
for arg in "$@"; do
  case "$arg" in
    --name=*) NAME="${arg#*=}" ;;
    --zone=*) ZONE="${arg#*=}" ;;
    --type=*) TYPE="${arg#*=}" ;;
    --config=*) CONFIG="${arg#*=}" ;;
    --workdir=*) WORKDIR="${arg#*=}" ;;
    --project=*) PROJECT="${arg#*=}" ;;
    --version=*) VERSION="${arg#*=}" ;;
    --queued) QUEUED=1 ;;
    --keep) KEEP=1 ;;
    --dry-run) DRY=1 ;;
    --config.*) EXTRA+=("$arg") ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done
for v in NAME ZONE TYPE CONFIG WORKDIR; do
  if [[ -z "${!v}" ]]; then
    echo "missing --$(echo "$v" | tr 'A-Z' 'a-z')=... (see --help)" >&2; exit 2
  fi
done
PROJ=${PROJECT:+--project=$PROJECT}
if [[ -z "$VERSION" ]]; then  # the TPU VM software image for each generation
  case "$TYPE" in
    v4-*) VERSION="tpu-ubuntu2204-base" ;;
    v5p-*) VERSION="v2-alpha-tpuv5" ;;
    v5litepod-*|v5e-*) VERSION="v2-alpha-tpuv5-lite" ;;
    v6e-*) VERSION="v2-alpha-tpuv6e" ;;
    *) echo "unknown --type=$TYPE; pass --version=IMAGE" >&2; exit 2 ;;
  esac
fi

run() {
  if (( DRY )); then printf '%s\n' "$*"; else echo "+ $*" >&2; eval "$@"; fi
}

if (( QUEUED )); then
  run gcloud compute tpus queued-resources create "$NAME-qr" --node-id="$NAME" \
    --zone="$ZONE" --accelerator-type="$TYPE" --runtime-version="$VERSION" $PROJ
  run "until gcloud compute tpus queued-resources describe $NAME-qr --zone=$ZONE $PROJ --format='value(state.state)' | grep -q ACTIVE; do sleep 30; done"
else
  run gcloud compute tpus tpu-vm create "$NAME" --zone="$ZONE" \
    --accelerator-type="$TYPE" --version="$VERSION" $PROJ
fi
SSH="gcloud compute tpus tpu-vm ssh $NAME --zone=$ZONE $PROJ --worker=all"
run gcloud compute tpus tpu-vm scp --recurse --zone="$ZONE" $PROJ --worker=all \
  "$(cd "$(dirname "$0")/.." && pwd)" "$NAME:~/csm-jax"
run $SSH --command="'cd ~/csm-jax && pip install -e .[tpu]'"
# Every worker runs the same command; jax.distributed discovers the slice.
run $SSH --command="'cd ~/csm-jax && python -m csm_jax.train --config=$CONFIG --workdir=$WORKDIR ${EXTRA[*]:-} 2>&1 | tee -a ~/train.log'"
if (( ! KEEP )); then
  if (( QUEUED )); then
    run gcloud compute tpus queued-resources delete "$NAME-qr" --zone="$ZONE" $PROJ --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$NAME" --zone="$ZONE" $PROJ --quiet
  fi
fi
