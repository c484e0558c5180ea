"""What `dysink bench speed` reports: per-configuration results and the medians behind them.

`steady_stats` turns the render's per-block records (render/events.py BlockDone.stats) into medians
of the steady-state blocks; `SpeedResult.to_json` is the bench/results.jsonl row. Pure: imports
nothing of dysink and no torch.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Steady:
    """Medians over the steady-state blocks."""

    block_ms: float
    frames_per_block: float
    stage_ms: dict[str, float]


@dataclass
class Floor:
    """The DiT's floor for a block: its FLOPs at the rates measured on this GPU."""

    block_ms: float
    fps: float
    tflop: float
    keys_frames: list[int]
    matmul_tflops: float
    attention_tflops: float


@dataclass
class SpeedResult:
    """One configuration's figures (see `to_json` for the bench/results.jsonl row)."""

    date: str
    device: str
    commit: str
    preset: str
    descriptors: str
    decoder: str
    stored: str
    weights: str
    resolution: str
    e2e_fps: float
    dit_fps: float
    ttff_s: float
    peak_gpu_gb: float | None
    peak_rss_gb: float
    ms_per_block: dict[str, float]
    blocks: int
    warmup_blocks: int
    frames: int
    wall_s: float
    load_s: float
    warmup_s: float | None  # compile and cuDNN tuning before the loop (the render's Note)
    warmup_blocks_s: float  # the warm-up blocks (CUDA graph capture happens in them)
    encode_fps: float | None
    floor: Floor | None = None
    fp8: bool = False
    step: str | None = None
    first_block_ms: dict[str, float] = field(default_factory=dict)  # block 0's stages: what TTFF holds
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The results.jsonl keys (plus decoder, fp8, stored and the figures around them)."""
        row = asdict(self)
        row.pop("extra")
        return {**row, **self.extra}


def steady_stats(records: list[dict[str, Any]], warmup: int) -> Steady:
    """Medians of the blocks after `warmup` warm-up blocks: wall time per block (from
    `since_loaded_s`, the loop's clock), frames per block and each stage's ms (0 when absent)."""
    if not 0 <= warmup < len(records):
        raise ValueError(f"{len(records)} blocks leave no steady block after {warmup} warm-up blocks")
    clock = [0.0] + [r["since_loaded_s"] for r in records]
    frames = [0] + [r["frames_written"] for r in records]
    steady = range(warmup, len(records))
    names = sorted({k for i in steady for k in records[i]["ms"]})
    return Steady(
        block_ms=statistics.median((clock[i + 1] - clock[i]) * 1000 for i in steady),
        frames_per_block=statistics.median(frames[i + 1] - frames[i] for i in steady),
        stage_ms={k: statistics.median(records[i]["ms"].get(k, 0.0) for i in steady) for k in names},
    )


def commit_id() -> str:
    """The commit measured: $DYSINK_COMMIT (a GPU box may receive no .git), else git, else 'unknown'."""
    if os.environ.get("DYSINK_COMMIT"):
        return os.environ["DYSINK_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def pinned_figures(stats: dict[str, Any]) -> dict[str, float]:
    """From torch.cuda.host_memory_stats(): the caching host allocator's byte counts now and at peak
    (GB, key `pinned.<stat>`; "allocated_bytes" counts active and cached blocks) and its time in
    CUDA's pinning calls (ms)."""
    out = {
        f"pinned.{key}": value / 1e9
        for key, value in stats.items()
        if "bytes" in key and key.endswith((".current", ".peak"))
    }
    if "host_alloc_time.total" in stats:
        out["pinning_ms"] = stats["host_alloc_time.total"] / 1000
    return out
