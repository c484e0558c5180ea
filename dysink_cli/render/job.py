"""What one render is asked to do (built by the CLI, a timeline or a batch) and what it reports.

The frame plan and the prompt switches are derived here once. Imports config and timeline only
(no torch), so the CLI can build and check a job before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dysink_cli.config import RenderConfig
from dysink_cli.errors import ConfigError
from dysink_cli.timeline import FramePlan, Segment, Switch, Timeline, plan_frames

ASPECT_TOLERANCE = 0.02  # a picture within 2 % of the render's aspect ratio is resized; beyond, refused


def frames_for_blocks(blocks: int, frames_per_block: int = 3, temporal_stride: int = 4) -> int:
    """Video frames that encode to exactly `blocks` blocks of latents: 1 + stride (F blocks - 1)
    (the causal VAE encodes frame 0 alone, then 4 frames per latent)."""
    return 1 + temporal_stride * (frames_per_block * blocks - 1)


@dataclass(frozen=True)
class StartFrames:
    """Frames to start from: a picture ("image", held for the first block: the output's first
    frames) or a video ("video": its last frames are context; the output repeats them only with
    `include_input`)."""

    path: Path
    kind: str  # "image" | "video"
    include_input: bool = False

    @property
    def flag(self) -> str:
        return "--image" if self.kind == "image" else "--continue"

    @property
    def writes_input(self) -> bool:
        return self.kind == "image" or self.include_input

    @property
    def fix(self) -> str:
        what = "a PNG or JPEG picture" if self.kind == "image" else "an .mp4 or .mkv video"
        return f"give {what}, or a .npy of uint8 RGB frames (numpy.save)"

    @property
    def noun(self) -> str:
        return "an image" if self.kind == "image" else "a video"

    def check_geometry(self, frames: int, size: tuple[int, int], render_size: tuple[int, int]) -> None:
        """A picture or video of `frames` frames at `size` (w, h) fits a render at `render_size`:
        the same aspect ratio within 2 % (it is resized), and a video holds one block (9 frames)."""
        (w, h), (width, height) = size, render_size
        if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise ConfigError(
                f"{self.flag} {self.path} is {w}x{h}, not the aspect ratio of the render, {width}x{height}",
                f"crop it to {width}:{height} first, or set output.width/height to match",
            )
        need = frames_for_blocks(1)
        if self.kind == "video" and frames < need:
            raise ConfigError(
                f"--continue {self.path} has {frames} frames; one block of context needs {need}",
                f"give a video of at least {need} frames",
            )

    def fingerprint(self) -> dict[str, object]:
        size = self.path.stat().st_size if self.path.is_file() else -1
        return {"kind": self.kind, "path": str(self.path), "bytes": size, "include_input": self.include_input}


@dataclass(frozen=True)
class RenderJob:
    """One video: prompts over time, length, output file and settings."""

    segments: tuple[Segment, ...]
    seconds: float
    output: Path
    config: RenderConfig
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    overwrite: bool = False
    lossless: bool = False
    log_json: Path | None = None
    start: StartFrames | None = None  # --image / --continue

    @cached_property
    def plan(self) -> FramePlan:
        """Blocks, latent and video frames that cover `seconds` at the output fps."""
        return plan_frames(self.seconds, self.config.output.fps, self.config.engine.frames_per_block)

    @cached_property
    def switches(self) -> list[Switch]:
        """The block at which each segment's prompt takes over (the first is block 0)."""
        return Timeline(segments=self.segments, source=str(self.output)).switch_blocks(self.plan)


@dataclass(frozen=True)
class RenderStats:
    """What a finished render reports."""

    output: Path
    video_frames: int
    blocks: int
    wall_s: float
    fps: float
    peak_gpu_gb: float
    peak_rss_gb: float
