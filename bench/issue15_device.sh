#!/usr/bin/env bash
# Issue 15's device run (H200): the Wan VAE and TAEHV decodes before/after in one run (the old tree
# in .old, made by `git archive 81e395c dysink_cli | tar -x -C .old; cp -r bench .old/`), then
# `dysink bench speed` per configuration, each in its own process (its own peak RSS and GPU).
#   DYSINK_COMMIT=<hash> bash bench/issue15_device.sh [vae] [speed | configuration names below]
# Writes under $OUT: decode.log, speed.log, speed.json (one object per configuration).
set -u
export PYTHONUNBUFFERED=1
: "${DYSINK_COMMIT:?set DYSINK_COMMIT (the GPU box has no current .git)}"
out="${OUT:-/tmp/out}"
parts="$(mktemp -d)"
mkdir -p "$out"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$out/decode.log"

if [[ " $* " == *" vae "* ]]; then
    for tree in .old .; do
        name=$([[ $tree == .old ]] && echo old || echo new)
        echo "== Wan VAE decode, tree $tree" >>"$out/decode.log"
        timeout 150 python3 "$tree/bench/vae_decode.py" --save-frames "$parts/frames_$name.pt" \
            >>"$out/decode.log" 2>&1
        echo "== TAEHV decode, tree $tree" >>"$out/decode.log"
        timeout 60 python3 "$tree/bench/taehv_speed.py" >>"$out/decode.log" 2>&1
    done
    python3 - "$parts" >>"$out/decode.log" 2>&1 <<'EOF'
import sys, torch
a, b = (torch.load(f"{sys.argv[1]}/frames_{t}.pt") for t in ("old", "new"))
print("frames identical, old tree vs new:", torch.equal(a, b), "max abs diff", (a - b).abs().max().item())
EOF
fi

run() {  # name, then bench speed's arguments; runs when the name (or "speed": all) was asked for
    local name="$1"
    shift
    [[ " $ASKED " == *" $name "* || " $ASKED " == *" speed "* ]] || return 0
    echo "== $name: $*" >>"$out/speed.log"
    timeout 120 python3 -m dysink_cli bench speed --blocks 15 --warmup 3 --json "$parts/$name.json" "$@" \
        >>"$out/speed.log" 2>&1
}
ASKED="$*"
run dysink_dedup --preset dysink
run dysink_dedup_gpu1 --preset dysink --set bank.gpu_entries=1
run dysink_all --preset dysink --set dysink.dedup_threshold=1.01
run dysink_all_gpu2 --preset dysink --set dysink.dedup_threshold=1.01 --set bank.gpu_entries=2
run dysink_all_gpu1 --preset dysink --set dysink.dedup_threshold=1.01 --set bank.gpu_entries=1
run longlive --preset longlive
run dysink_taehv --preset dysink --decoder taehv --set dysink.descriptor_decoder=taehv
run dysink_taehv_descriptors --preset dysink --set dysink.descriptor_decoder=taehv
python3 - "$parts" "$out/speed.json" <<'EOF'
import json, pathlib, sys
rows = {p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}
if rows:
    pathlib.Path(sys.argv[2]).write_text(json.dumps(rows, indent=1))
EOF
grep -E "^(==|\{|frames identical|NVIDIA)|FPS|ms" "$out/decode.log" "$out/speed.log" 2>/dev/null | cut -c1-300 | tail -80
