"""The x264 encode, measured apart from the render (the speed bench hands frames to a NullSink).

Synthetic frames (smooth moving gradients plus noise: not trivially compressible) go through
FfmpegSink at the output's size, rate and CRF. Imports io.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from dysink_cli.errors import FfmpegError
from dysink_cli.io.ffmpeg import FfmpegSink, ffmpeg_exe


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(n, height, width, 3) uint8 frames: moving sine gradients plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((n, height, width, 3), dtype=np.uint8)
    for t in range(n):
        base = np.stack([np.sin((x + 3 * t) / 40), np.cos((y - 2 * t) / 30), np.sin((x + y + t) / 60)], -1)
        out[t] = np.clip(127 + 100 * base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    return out


def encode_fps(
    width: int, height: int, fps: int, crf: int, frames: int = 48, block: int = 12
) -> float | None:
    """Frames per second x264 encodes on this machine's CPU; None when no ffmpeg is found."""
    try:
        ffmpeg_exe()
    except FfmpegError:
        return None
    data = synthetic_frames(frames, height, width)
    with tempfile.TemporaryDirectory(prefix="dysink-bench-") as tmp:
        start = time.perf_counter()
        with FfmpegSink(Path(tmp) / "encode.mp4", width, height, fps, crf=crf) as sink:
            for i in range(0, frames, block):
                sink.write(data[i : i + block])
        return frames / (time.perf_counter() - start)
