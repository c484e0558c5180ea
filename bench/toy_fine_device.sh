#!/usr/bin/env bash
# Issue 13's next device run: the toy DiT trained anew with 8-px tokens (profile "toy-fine", a 1 x 1
# latent patch), beside the shipped VAE, PE-Core and umT5, in calls of under 10 minutes on one warm
# machine (the checkpoint stays in /tmp/ck between calls; a machine that went back loses it):
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_device.sh start    # first call
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_device.sh resume   # until "complete", then exports
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_device.sh export   # weights + RECORD as they stand
# The profile's minutes: dit 9, sf 3.5, dmd 2 ("text" is counted in steps).
# Writes under $OUT: train.log, and on export toy-fine.safetensors and RECORD.md. Scored after, on the
# CPU: bench/toy_motion_probe.py --rollout 4, python -m dysink_cli.toy.evaluate, bench/toy_theme_seeds.py.
set -u -o pipefail
export PYTHONUNBUFFERED=1
: "${DYSINK_COMMIT:?set DYSINK_COMMIT (the GPU box has no current .git)}"
out="${OUT:-/tmp/out}"
train="python3 -m dysink_cli.toy.train --out /tmp/ck --profile toy-fine"
minutes=${MINUTES:-9.2}
mkdir -p "$out"
nvidia-smi --query-gpu=name --format=csv,noheader

case "${1:-}" in
start)
    $train --from-weights dysink_cli/toy/weights/toy.safetensors --new-dit --minutes "$minutes" 2>&1 \
        | tee "$out/train.log" | tail -25
    ;;
resume)
    $train --minutes "$minutes" 2>&1 | tee "$out/train.log" | tail -25
    $train --export --allow-incomplete --weights "$out/toy-fine.safetensors"
    ;;
export)
    $train --export --allow-incomplete --weights "$out/toy-fine.safetensors"
    ;;
*)
    echo "usage: bash bench/toy_fine_device.sh start|resume|export" >&2
    exit 2
    ;;
esac
