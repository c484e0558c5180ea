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

from dysink_cli.benchmarks.encode import synthetic_frames
from dysink_cli.io.ffmpeg import FfmpegSink, probe_video


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--lossless", action="store_true")
    parser.add_argument("--block", type=int, default=12, help="frames per write (one block)")
    args = parser.parse_args()
    data = synthetic_frames(args.frames, 480, 832)
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
