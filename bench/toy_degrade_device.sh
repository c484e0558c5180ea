#!/usr/bin/env bash
# Issue 13's degrade trial on the device (session 11), in two calls on one warm machine (each under
# the 10-minute limit; the second reads the first's checkpoint in /tmp/ck):
#   DYSINK_COMMIT=<hash> bash bench/toy_degrade_device.sh degrade   # ~6 min
#   DYSINK_COMMIT=<hash> bash bench/toy_degrade_device.sh dmd       # ~5 min
# "degrade": from the shipped toy weights, the "degrade" stage (teacher forcing on blurred and noised
# context) to its budget, exported. "dmd": two arms from that checkpoint, dmd on the true context
# ("toy-degrade", the control) and on the degraded one ("toy-degrade-dmd"), each exported. The
# world's camera speed is the working tree's (toy/world.py). Scored after: bench/toy_motion_probe.py
# --rollout 4, python -m dysink_cli.toy.evaluate, bench/toy_theme_seeds.py.
# Writes under $OUT: <name>.safetensors, RECORD-<name>.md and <name>.log per exported model.
set -u -o pipefail
export PYTHONUNBUFFERED=1
: "${DYSINK_COMMIT:?set DYSINK_COMMIT (the GPU box has no current .git)}"
out="${OUT:-/tmp/out}"
train="python3 -m dysink_cli.toy.train"
mkdir -p "$out"
nvidia-smi --query-gpu=name --format=csv,noheader

export_as() {  # checkpoint, profile, name
    $train --out "$1" --profile "$2" --export --allow-incomplete --weights "$out/$3.safetensors" &&
        mv "$out/RECORD.md" "$out/RECORD-$3.md"
}

case "${1:-}" in
degrade)
    $train --out /tmp/ck --profile toy-degrade --from-weights dysink_cli/toy/weights/toy.safetensors \
        --stage degrade --minutes 6 2>&1 | tee "$out/degrade.log" | tail -4
    export_as /tmp/ck toy-degrade degrade
    ;;
dmd)
    cp -r /tmp/ck /tmp/ck_plain
    $train --out /tmp/ck --profile toy-degrade-dmd --stage dmd --minutes 3 2>&1 | tee "$out/dmd-soft.log" | tail -3
    export_as /tmp/ck toy-degrade-dmd dmd-soft
    $train --out /tmp/ck_plain --profile toy-degrade --stage dmd --minutes 3 2>&1 | tee "$out/dmd-plain.log" | tail -3
    export_as /tmp/ck_plain toy-degrade dmd-plain
    ;;
*)
    echo "usage: bash bench/toy_degrade_device.sh degrade|dmd" >&2
    exit 2
    ;;
esac
