"""x264 encode throughput of 832x480 frames through FfmpegSink on this machine's CPU.

The GPU machine has no ffmpeg, so the GPU benchmark measures the hand-off with a NullSink and
this script measures encoding separately. Frames are smooth moving gradients plus noise (a
realistic, not trivially compressible, load).

    python bench/x264_throughput.py --frames 240 [--lossless]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dysink_cli.io.ffmpeg import FfmpegSink, probe_video


def frames(n: int, height: int = 480, width: int = 832, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        base = np.stack([np.sin((x + 3 * t) / 40), np.cos((y - 2 * t) / 30), np.sin((x + y + t) / 60)], -1)
        out[t] = np.clip(127 + 100 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--lossless", action="store_true")
    parser.add_argument("--block", type=int, default=12, help="frames per write (one block)")
    args = parser.parse_args()
    data = frames(args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("out.mkv" if args.lossless else "out.mp4")
        start = time.perf_counter()
        with FfmpegSink(path, 832, 480, 16, lossless=args.lossless) as sink:
            for i in range(0, args.frames, args.block):
                sink.write(data[i : i + args.block])
        wall = time.perf_counter() - start
        count, w, h = probe_video(path)
        size = path.stat().st_size
    mode = "lossless" if args.lossless else "crf 18"
    print(
        f"x264 {mode}, {w}x{h}, {count} frames on {os.cpu_count()} CPU cores: {wall:.2f} s = "
        f"{count / wall:.1f} frames/s, {size / count / 1024:.0f} KiB/frame"
    )


if __name__ == "__main__":
    main()
