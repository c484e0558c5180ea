"""GPU long run (issue 5): a 10-minute 832x480 render (--seconds 600) of the DySink preset with
random full-size weights; every block is stored in the bank (dedup off) so the bank spills to
disk and evicts at its cap. Reports flat GPU memory / RSS, bank disk use and FPS over time.

    python bench/long_gpu.py --seconds 600 --log /tmp/long.jsonl [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench import build_models, random_embeds  # noqa: E402
from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.io.ffmpeg import NullSink  # noqa: E402
from dysink_cli.render.events import BlockDone  # noqa: E402
from dysink_cli.render.job import RenderJob  # noqa: E402
from dysink_cli.render.session import render  # noqa: E402
from dysink_cli.render.workdir import work_dir_for  # noqa: E402
from dysink_cli.timeline import Segment  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--log", type=Path, default=Path("/tmp/long_gpu.jsonl"))
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    overrides = [
        "dysink.dedup_threshold=1.0",
        'bank.dtype="fp8"',
        "bank.ram_gb=4",
        "bank.disk_gb=16",
        *args.set,
    ]
    cfg = resolve_config("dysink", overrides)
    models = build_models(torch.device("cuda"), torch.bfloat16)
    out = Path("/tmp/long_gpu.mp4")
    job = RenderJob(
        segments=(Segment(0.0, "benchmark"),),
        seconds=args.seconds,
        output=out,
        config=cfg,
        seed=1,
        device="cuda",
        overwrite=True,
    )
    bank_dir = work_dir_for(out) / "bank"
    log = args.log.open("w")

    def on_event(event: object) -> None:
        if isinstance(event, BlockDone):
            disk = (
                sum(p.stat().st_size for p in bank_dir.glob("*") if p.is_file()) if bank_dir.exists() else 0
            )
            row = {
                **event.stats,
                "gpu_alloc_gb": torch.cuda.memory_allocated() / 1e9,
                "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9,
                "bank_disk_gb": disk / 1e9,
            }
            log.write(json.dumps(row) + "\n")
            log.flush()

    start = time.perf_counter()
    stats = render(
        job,
        on_event,
        networks=models,
        embeds=random_embeds("benchmark", torch.device("cuda")),
        sink_factory=NullSink,
    )
    log.close()
    print(f"done: {stats.video_frames} frames in {time.perf_counter() - start:.0f} s", flush=True)
    summarize(args.log, cfg.output.fps)


def summarize(path: Path, fps: int) -> None:
    rows = [json.loads(line) for line in path.open()]
    minute = 60 * fps  # video frames in one minute

    def rate(selected: list[dict]) -> float:
        frames = selected[-1]["frames_written"] - selected[0]["frames_written"]
        return frames / (selected[-1]["time_s"] - selected[0]["time_s"])

    first = [r for r in rows if r["frames_written"] <= minute]
    last = [r for r in rows if r["frames_written"] > rows[-1]["frames_written"] - minute]
    n = len(rows)
    print(f"blocks {n}; FPS first minute {rate(first):.1f}, last minute {rate(last):.1f}")
    for key in ("gpu_alloc_gb", "gpu_peak_gb", "rss_gb", "bank_disk_gb"):
        tail = max(r[key] for r in rows[-n // 10 :])
        print(
            f"{key}: at 10% {rows[n // 10][key]:.2f}, max in the last 10% {tail:.2f}, "
            f"max {max(r[key] for r in rows):.2f}"
        )
    tiers = rows[-1].get("bank_tiers", {})
    print("bank tiers at the end: " + json.dumps(tiers))


if __name__ == "__main__":
    main()
