"""Starting from given frames: `--image PATH` (one picture, held for the first block) and
`--continue VIDEO` (the last frames of a video as context). The frames are read by ffmpeg (or, from
a `.npy` file, by numpy: uint8 (H, W, 3) for a picture, (T, H, W, 3) for a video), fitted
to the render's size, and laid out as whole blocks of latents: the causal VAE encodes frame 0
alone and then 4 frames per latent, so k blocks of 3 latents need 1 + 4 (3k - 1) frames (9 for
one block). Imports errors and io; torch for the frames.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.errors import ConfigError, FfmpegError
from dysink_cli.io.arrays import is_array, read_frames_array
from dysink_cli.io.ffmpeg import read_frames
from dysink_cli.model.vae import WanVAE
from dysink_cli.render.job import StartFrames, frames_for_blocks


def blocks_in(frames: int, frames_per_block: int = 3, temporal_stride: int = 4) -> int:
    """Whole blocks of latents that `frames` video frames give (0 when fewer than one block's)."""
    return (1 + (frames - 1) // temporal_stride) // frames_per_block if frames > 0 else 0


def fit(frames: np.ndarray, width: int, height: int, start: StartFrames) -> Tensor:
    """uint8 [T, H, W, 3] -> float [T, 3, height, width] in [-1, 1], resized when the aspect ratio
    matches the render's (within 2 %); a different aspect ratio is refused."""
    t, h, w, _ = frames.shape
    start.check_geometry(t, (w, h), (width, height))
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    if (h, w) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(-1.0, 1.0)


def load_start(
    start: StartFrames, width: int, height: int, max_blocks: int, frames_per_block: int = 3
) -> Tensor:
    """The video [1, 3, T, height, width] in [-1, 1] to encode: a picture held for one block, or the
    last whole blocks (at most `max_blocks`) of a video."""
    if not start.path.is_file():
        what = "a folder" if start.path.is_dir() else "not found"
        raise ConfigError(f"{start.flag} {start.path}: {what}", f"give the path of a {start.kind} file")
    need = frames_for_blocks(1, frames_per_block)
    try:
        source = read_frames_array(start.path) if is_array(start.path) else read_frames(start.path)
        if start.kind == "image":
            first = next(iter(source))
            frames = np.repeat(first[None], need, axis=0)  # the picture held for the first block
        else:
            frames = np.stack(deque(source, maxlen=frames_for_blocks(max_blocks, frames_per_block)))
    except (FfmpegError, StopIteration, ValueError) as err:
        raise ConfigError(
            f"{start.flag} {start.path} cannot be read as {start.noun}: {getattr(err, 'message', err)}",
            start.fix,
        ) from None
    start.check_geometry(len(frames), (frames.shape[2], frames.shape[1]), (width, height))
    blocks = blocks_in(len(frames), frames_per_block)
    frames = frames[-frames_for_blocks(blocks, frames_per_block) :]
    return fit(frames, width, height, start).permute(1, 0, 2, 3).unsqueeze(0)


def encode_start(
    start: StartFrames, vae: WanVAE, size: tuple[int, int], window_frames: int, frames_per_block: int,
    device: torch.device, dtype: torch.dtype,
) -> tuple[list[Tensor], str]:  # fmt: skip
    """The picture (one block) or the video's last blocks (up to the window) through the VAE
    encoder: clean latent blocks (1, frames_per_block, C, h, w) each, and a line saying so."""
    most = 1 if start.kind == "image" else max(1, window_frames // frames_per_block)
    video = load_start(start, *size, most, frames_per_block)
    given = list(vae.encode(video.to(device, dtype)).split(frames_per_block, dim=1))
    return given, f"starting from {start.flag} {start.path}: {video.shape[2]} frames -> {len(given)} block(s)"
