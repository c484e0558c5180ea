"""Frames saved by numpy (`numpy.save` of uint8 RGB): (H, W, 3) for a picture, (T, H, W, 3) for a
video. `--image` / `--continue` take them as exact frames, read without ffmpeg. Numpy only."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def is_array(path: Path) -> bool:
    return path.suffix.lower() == ".npy"


def read_frames_array(path: Path, mmap: bool = False) -> np.ndarray:
    """The frames as (T, H, W, 3) uint8 (a picture is one frame); ValueError naming the problem."""
    try:
        frames = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise ValueError(f"numpy cannot read it ({err})") from None
    if frames.dtype != np.uint8 or frames.ndim not in (3, 4) or frames.shape[-1] != 3 or not frames.size:
        shape = tuple(frames.shape)
        raise ValueError(f"it holds {frames.dtype} {shape}, not uint8 (H, W, 3) or (T, H, W, 3)")
    return frames[None] if frames.ndim == 3 else frames


def probe_array(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) from the header and a memory map, without reading the frames."""
    frames = read_frames_array(path, mmap=True)
    return frames.shape[0], frames.shape[2], frames.shape[1]
