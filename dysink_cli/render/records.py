"""The per-block JSON record of `--log-json` and the memory probe behind its figures.
Imports nothing of dysink (psutil and torch for the numbers)."""

from __future__ import annotations

import time
from typing import Any

import psutil
import torch


class MemoryProbe:
    """Current and peak GPU memory (allocator) and host RSS, in GB."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.process = psutil.Process()
        self.peak_rss = 0.0

    def gpu_gb(self) -> float:
        return torch.cuda.memory_allocated() / 1e9 if self.cuda else 0.0

    def peak_gpu_gb(self) -> float:
        return torch.cuda.max_memory_allocated() / 1e9 if self.cuda else 0.0

    def rss_gb(self) -> float:
        rss = self.process.memory_info().rss / 1e9
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def peak_rss_gb(self) -> float:
        return max(self.peak_rss, self.rss_gb())


def block_record(
    record: dict[str, Any],
    ms: dict[str, float],
    probe: MemoryProbe,
    frames_written: int,
    started: float,
    fps: int,
) -> dict[str, Any]:
    """One block's line of --log-json (see render/events.py BlockDone) from the engine's record."""
    elapsed = time.perf_counter() - started
    retrieval = record.get("retrieval") or {}
    closures = sum(e["gated_off"] for g in record.get("gate", []) for e in g["entries"])
    extras = {k: retrieval[k] for k in ("retrievable_frames",) if k in retrieval}  # DySink
    return {
        "block": record["block"],
        "start_frame": record["start_frame"],
        "time_s": round(elapsed, 4),
        "frames_written": frames_written,
        "video_s": frames_written / fps,
        "window_frames": record.get("effective_local_attn_frames"),
        "bank_size": record.get("bank_size_after_block", 0),
        "retrieved_frames": retrieval.get("retrieved_frames", []),
        "gate_closures": closures,
        "dedup_added": (record.get("dedup") or {}).get("added_to_bank"),
        "gpu_mem_gb": probe.gpu_gb(),
        "rss_gb": probe.rss_gb(),
        "fps": frames_written / elapsed if elapsed > 0 else 0.0,
        "ms": {k: round(v, 2) for k, v in ms.items()},
        **extras,
    }
