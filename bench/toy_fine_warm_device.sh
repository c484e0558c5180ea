#!/usr/bin/env bash
# Issue 13, one device call (~8 minutes): the shipped DiT made 8-px-token (bench/toy_fine_trial.py's
# warm start), then profile "toy-fine-degrade" at GPU scale: "degrade" (5 min), exported, then "dmd" on
# degraded context (2 min), exported again.
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_warm_device.sh
# Writes under $OUT: train.log, fine-degrade.safetensors, fine-dmd.safetensors and their RECORDs. Scored
# after, on the CPU: bench/toy_motion_probe.py --rollout 4, toy.evaluate, bench/toy_theme_seeds.py.
set -eu -o pipefail
export PYTHONUNBUFFERED=1
: "${DYSINK_COMMIT:?set DYSINK_COMMIT (the GPU box has no current .git)}"
out="${OUT:-/tmp/out}"
mkdir -p "$out/degrade" "$out/dmd"
rm -rf /tmp/ck  # one call from the shipped weights: --from-weights refuses an existing checkpoint
nvidia-smi --query-gpu=name --format=csv,noheader
python3 bench/toy_fine_trial.py --write-start /tmp/fine-start.safetensors
train="python3 -m dysink_cli.toy.train --out /tmp/ck --profile toy-fine-degrade"
$train --from-weights /tmp/fine-start.safetensors --stage degrade --minutes "${DEGRADE_MINUTES:-5.1}" 2>&1 \
    | tee "$out/train.log" | tail -12
$train --export --allow-incomplete --weights "$out/degrade/fine-degrade.safetensors"
$train --minutes "${DMD_MINUTES:-2.1}" 2>&1 | tee -a "$out/train.log" | tail -12
$train --export --allow-incomplete --weights "$out/dmd/fine-dmd.safetensors"
