#!/usr/bin/env bash
# Issue 13, session 13: the toy DiT trained anew with 8-px tokens and soft context from its first
# stage (profile "toy-fine-flow": "dit" 9 minutes with half the rows' context degraded, no "sf",
# "text", then dmd on soft context guided by contrast captions), beside the shipped VAE, PE-Core and
# umT5. One warm machine keeps /tmp/ck between the calls (a machine that went back loses it):
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_flow_device.sh flow     # call 1: "dit", exported
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_flow_device.sh guided   # call 2: "text" (flow model
#                                  # exported), then the guided dmd, exported
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_flow_device.sh plain    # call 3: the unguided dmd from the
#                                  # same flow model (the control), then a decoder-only trial (3 min)
#   DYSINK_COMMIT=<hash> bash bench/toy_fine_flow_device.sh all      # or all in one call, shorter
# Writes under $OUT one folder per phase: train.log, the exported weights and RECORD.md. Scored after,
# on the CPU: bench/toy_motion_probe.py --rollout 4, python -m dysink_cli.toy.evaluate,
# bench/toy_theme_seeds.py.
set -eu -o pipefail
export PYTHONUNBUFFERED=1
: "${DYSINK_COMMIT:?set DYSINK_COMMIT (the GPU box has no current .git)}"
out="${OUT:-/tmp/out}"
train="python3 -m dysink_cli.toy.train --profile toy-fine-flow"
phase="${1:-}"
mkdir -p "$out/$phase"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
case "$phase" in
flow)
    rm -rf /tmp/ck /tmp/ck_flow
    $train --out /tmp/ck --from-weights dysink_cli/toy/weights/toy.safetensors --new-dit \
        --minutes "${MINUTES:-9.0}" 2>&1 | tee "$out/flow/train.log" | tail -8
    $train --out /tmp/ck --export --allow-incomplete --weights "$out/flow/toy-dit.safetensors"
    ;;
guided)
    $train --out /tmp/ck --stage dit --minutes 1 2>&1 | tee "$out/guided/train.log" | tail -3
    $train --out /tmp/ck --stage text --minutes 3.5 2>&1 | tee -a "$out/guided/train.log" | tail -4
    $train --out /tmp/ck --export --allow-incomplete --weights "$out/guided/flow/toy-flow.safetensors"
    cp -r /tmp/ck /tmp/ck_flow  # the flow model before dmd: the control arm starts from it
    $train --out /tmp/ck --stage dmd --minutes "${DMD_MINUTES:-2.05}" 2>&1 | tee -a "$out/guided/train.log" | tail -4
    $train --out /tmp/ck --export --allow-incomplete --weights "$out/guided/toy-guided.safetensors"
    ;;
plain)
    python3 -m dysink_cli.toy.train --profile toy-fine-flow-plain --out /tmp/ck_plain --resume /tmp/ck_flow \
        --stage dmd --minutes "${DMD_MINUTES:-2.05}" 2>&1 | tee "$out/plain/train.log" | tail -4
    python3 -m dysink_cli.toy.train --profile toy-fine-flow-plain --out /tmp/ck_plain --export \
        --allow-incomplete --weights "$out/plain/toy-plain.safetensors"
    python3 bench/toy_decoder_trial.py --out "$out/plain/decoder/toy-decoder.safetensors" --minutes 3 \
        --batch 12 4 3 --lr 5e-5 --warmup 50 --device cuda 2>&1 | tee "$out/plain/decoder.log" | tail -3
    ;;
all)  # one call, profile "toy-fine-flow-short": dit 3.5, text 1 (exported), guided dmd 1.5 (exported)
    rm -rf /tmp/ck
    short="python3 -m dysink_cli.toy.train --profile toy-fine-flow-short --out /tmp/ck"
    $short --from-weights dysink_cli/toy/weights/toy.safetensors --new-dit --stage dit --minutes 3.55 2>&1 \
        | tee "$out/all/train.log" | tail -4
    $short --stage text --minutes 1.05 2>&1 | tee -a "$out/all/train.log" | tail -3
    $short --export --allow-incomplete --weights "$out/all/flow/toy-flow.safetensors"
    rm -rf /tmp/ck_flow && cp -r /tmp/ck /tmp/ck_flow  # "plain" may follow on this machine
    $short --stage dmd --minutes 1.55 2>&1 | tee -a "$out/all/train.log" | tail -4
    $short --export --allow-incomplete --weights "$out/all/toy-guided.safetensors"
    ;;
*)
    echo "usage: bash bench/toy_fine_flow_device.sh flow|guided|plain|all" >&2
    exit 2
    ;;
esac
