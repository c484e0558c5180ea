"""Events the engine and the renderer emit; the CLI draws them (the library never prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RenderStarted:
    """A video starts: its exact geometry (nothing is rounded silently)."""

    output: str
    total_blocks: int
    latent_frames: int
    video_frames: int
    fps: int
    duration_s: float
    first_block: int = 0  # > 0 when resuming


@dataclass(frozen=True)
class Note:
    """A one-line message for the user (demo model in use, switch times, resume point...)."""

    message: str
    level: str = "info"  # "info" | "warning"


@dataclass(frozen=True)
class PromptSwitch:
    """A timeline segment takes effect at a block boundary."""

    segment: int
    block: int
    requested_s: float
    effective_s: float
    prompt: str


@dataclass(frozen=True)
class BlockDone:
    """One block generated, decoded and handed to the encoder.

    `stats` is the per-block JSON record written by --log-json: keys `block`, `start_frame`,
    `time_s`, `frames_written`, `bank_size`, `retrieved_frames`, `gate_closures`, `gpu_mem_gb`,
    `rss_gb`, `fps`, `ms` (dict of per-stage milliseconds), `since_loaded_s`, on a run's first
    block `first_frame_s` (block loop start to its first frames reaching the encoder), plus
    policy-specific extras (DySink: `retrievable_frames`, the bank entries retrieval chose from).
    """

    block: int
    total_blocks: int
    frames_written: int
    video_seconds_done: float
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """The video is complete and the encoder closed."""

    output: str
    frames_written: int
    seconds: float
    wall_s: float
    stats: dict[str, Any] = field(default_factory=dict)


Event = RenderStarted | Note | PromptSwitch | BlockDone | Finished
