"""What one render is asked to do (built by the CLI, a timeline or a batch) and what it reports.

The frame plan and the prompt switches are derived here once. Imports config and timeline only
(no torch), so the CLI can build and check a job before anything heavy loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from dysink_cli.config import RenderConfig
from dysink_cli.timeline import FramePlan, Segment, Switch, Timeline, plan_frames


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
