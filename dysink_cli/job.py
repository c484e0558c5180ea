"""What one render is asked to do (built by the CLI, timeline or batch; consumed by render())."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dysink_cli.config import RenderConfig


@dataclass(frozen=True)
class Segment:
    """A prompt that starts at `at_s` seconds of video (the first starts at 0)."""

    at_s: float
    prompt: str


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
    debug: bool = False


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
