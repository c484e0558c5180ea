"""CPU long-run check (issue 5): the tiny model renders 2,000+ blocks with a tiny bank RAM budget
(entries spill to disk) and a disk cap (entries are evicted); peak RSS must stay flat.

    python bench/long_cpu.py --blocks 2100 --out /tmp/long.mp4

Prints RSS at 10 % and in the last 10 % of blocks, disk use of the work folder, bank tier counters.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.render.events import BlockDone  # noqa: E402
from dysink_cli.render.job import RenderJob  # noqa: E402
from dysink_cli.render.session import render  # noqa: E402
from dysink_cli.render.workdir import work_dir_for  # noqa: E402
from dysink_cli.timeline import Segment  # noqa: E402


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=2100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/dysink-long/long.mp4"))
    parser.add_argument("--disk-gb", type=float, default=0.02)
    parser.add_argument("--ram-gb", type=float, default=0.002)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    overrides = [
        "dysink.dedup_threshold=1.0",  # store every block: the bank keeps growing into its caps
        f"bank.ram_gb={args.ram_gb}",
        f"bank.disk_gb={args.disk_gb}",
        "bank.gpu_entries=2",
        "output.checkpoint_every_blocks=100",
    ]
    cfg = resolve_config("tiny", overrides)
    seconds = (12 * args.blocks - 3) / cfg.output.fps
    job = RenderJob(
        segments=(Segment(0.0, "a long walk"),),
        seconds=seconds,
        output=args.out,
        config=cfg,
        seed=3,
        device="cpu",
        overwrite=True,
        log_json=args.out.with_suffix(".jsonl"),
    )
    rows: list[tuple[int, float, int, dict]] = []
    work = work_dir_for(args.out)
    peak_disk = 0

    def on_event(event: object) -> None:
        nonlocal peak_disk
        if isinstance(event, BlockDone):
            if event.block % 25 == 0:
                peak_disk = max(peak_disk, disk_bytes(work / "bank"))
            rows.append((event.block, event.stats["rss_gb"], peak_disk, event.stats.get("bank_tiers", {})))
            if event.block % 100 == 0:
                print(
                    json.dumps(
                        {
                            "block": event.block,
                            "rss_gb": event.stats["rss_gb"],
                            "bank_disk_mb": peak_disk / 1e6,
                            **event.stats.get("bank_tiers", {}),
                        }
                    ),
                    flush=True,
                )

    start = time.perf_counter()
    stats = render(job, on_event)
    n = len(rows)
    early = [r[1] for r in rows[n // 10 : 2 * n // 10]]  # the second tenth (past start-up)
    late = [r[1] for r in rows[-n // 10 :]]
    print(
        f"RSS peak over blocks 10-20%: {max(early):.3f} GB; over the last 10%: {max(late):.3f} GB "
        f"(ratio {max(late) / max(early):.3f}); medians {sorted(early)[len(early) // 2]:.4f} -> "
        f"{sorted(late)[len(late) // 2]:.4f} GB"
    )
    tiers = rows[-1][3]
    print(f"blocks {n}, frames {stats.video_frames}, wall {time.perf_counter() - start:.0f} s")
    print(f"bank disk peak {peak_disk / 1e6:.1f} MB (cap {args.disk_gb * 1e3:.0f} MB); final tiers {tiers}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
