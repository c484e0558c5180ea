"""What storing a full-size DySink block in the memory bank costs the render loop (issue 15, item 4).

Full-size entry shapes (30 layers, 4680 tokens, 12 heads x 128, bf16: 0.86 GB of K/V per block),
a real MemoryBank (RAM tier `--ram-gb`, spill files in a temporary folder). Each simulated block
runs a fixed GPU workload (bf16 matmuls, ~`--work-ms`) on the compute stream, then stores the
block (`bank.add`) and prefetches two entries, as `DySinkMemory.remember` does. Reported: the host
time of add and prefetch, the block's wall time against the workload alone, and the GPU time of
the next block's workload (a copy queued on the compute stream delays it). Medians over the
steady blocks (after the first `--warmup`) and over the blocks stored while the RAM tier filled,
plus the micro costs (pinned allocation, D2H copy). A before/after in one run: the old tree first
on PYTHONPATH (`PYTHONPATH=old python3 bench/bank_store.py`).

    python3 bench/bank_store.py [--blocks 24] [--dtype same|fp8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # after PYTHONPATH (a before-run names an old tree)

from dysink_cli.engine.memory.bank import MemoryBank  # noqa: E402
from dysink_cli.engine.memory.types import BankEntry  # noqa: E402

LAYERS, TOKENS, HEADS, HEAD_DIM = 30, 3 * 1560, 12, 128


def workload(a: torch.Tensor, reps: int) -> None:
    for _ in range(reps):
        a = (a @ a).mul_(1e-3)


def timed_gpu(fn) -> float:  # noqa: ANN001
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end)


def micro(k: torch.Tensor) -> dict[str, float]:
    out = {}
    t0 = time.perf_counter()
    host = torch.empty(k.shape, dtype=k.dtype, pin_memory=True)
    out["pinned_alloc_first_ms"] = 1e3 * (time.perf_counter() - t0)
    del host
    t0 = time.perf_counter()
    host = torch.empty(k.shape, dtype=k.dtype, pin_memory=True)
    out["pinned_alloc_again_ms"] = 1e3 * (time.perf_counter() - t0)
    out["d2h_pinned_ms"] = timed_gpu(lambda: host.copy_(k, non_blocking=True))
    pageable = torch.empty(k.shape, dtype=k.dtype)
    t0 = time.perf_counter()
    pageable.copy_(k)
    out["d2h_pageable_ms"] = 1e3 * (time.perf_counter() - t0)
    out["gb"] = k.numel() * k.element_size() / 1e9
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=30)
    p.add_argument("--warmup", type=int, default=4)
    p.add_argument("--dtype", default="same")
    p.add_argument("--ram-gb", type=float, default=8.0)
    p.add_argument("--work-ms", type=float, default=450.0)  # a full-size dysink block: ~500 ms
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    dev = torch.device("cuda")
    shape = (LAYERS, 1, TOKENS, HEADS, HEAD_DIM)
    k = torch.randn(shape, device=dev, dtype=torch.bfloat16)
    v = torch.randn(shape, device=dev, dtype=torch.bfloat16)
    latent = torch.randn(1, 3, 16, 60, 104, device=dev)
    a = torch.randn(4096, 4096, device=dev, dtype=torch.bfloat16)
    workload(a, 10)  # cuBLAS warm-up
    one = timed_gpu(lambda: workload(a, 10)) / 10
    reps = max(1, round(args.work_ms / one))
    alone = [timed_gpu(lambda: workload(a, reps)) for _ in range(5)]
    result: dict = {"micro": micro(k), "workload_ms": statistics.median(alone), "dtype": args.dtype}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bank = MemoryBank(work_dir=tmp, ram_gb=args.ram_gb, disk_gb=200.0, dtype=args.dtype, device=dev)
        if hasattr(bank, "reserve_pinned"):  # as the render's warm-up does (absent from older trees)
            bank.reserve_pinned(shape, torch.bfloat16)
        for i in range(args.blocks):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            gpu = timed_gpu(lambda: workload(a, reps))  # this block's denoising
            t1 = time.perf_counter()
            desc = torch.randn(1024)
            bank.add(BankEntry(3 * i, desc, k.clone(), v.clone(), latent))
            t2 = time.perf_counter()
            bank.prefetch(sorted({0, max(0, i - 1)}))
            t3 = time.perf_counter()
            nxt = timed_gpu(lambda: workload(a, reps))  # the next block's first work after the store
            torch.cuda.synchronize()
            t4 = time.perf_counter()
            rows.append({
                "block": i, "work_gpu_ms": gpu, "add_ms": 1e3 * (t2 - t1), "prefetch_ms": 1e3 * (t3 - t2),
                "next_work_gpu_ms": nxt, "wall_ms": 1e3 * (t4 - t0),
            })  # fmt: skip
        t5 = time.perf_counter()
        bank.flush()
        result["flush_ms"] = 1e3 * (time.perf_counter() - t5)
        result["stats"] = bank.stats()
        bank.close()
    steady = rows[args.warmup :]
    filling = rows[: result["stats"]["ram_entries"]]  # blocks stored while the RAM tier was filling
    result["filling_add_ms_median"] = statistics.median(r["add_ms"] for r in filling)
    result["median"] = {key: statistics.median(r[key] for r in steady) for key in rows[0] if key != "block"}
    result["max"] = {key: max(r[key] for r in steady) for key in rows[0] if key != "block"}
    result["rows"] = rows
    shown = ("micro", "workload_ms", "median", "max", "filling_add_ms_median", "flush_ms", "dtype")
    print(json.dumps({k: result[k] for k in shown}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
