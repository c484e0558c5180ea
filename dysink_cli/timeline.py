"""Frame plan and prompt timeline (pure; no torch).

`plan_frames` turns seconds into latent frames, blocks and video frames (Wan VAE: T latents give
4T - 3 frames). `Timeline` reads `[[segment]]` prompts from TOML; a prompt switch takes effect at
the first block boundary at or after its `at`, and nothing is rounded silently. Imports config
(TOML reading, key suggestions) and errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from dysink_cli.config import load_toml, suggest
from dysink_cli.errors import ConfigError, TimelineError


@dataclass(frozen=True)
class Segment:
    """A prompt that starts at `at_s` seconds of video (the first starts at 0)."""

    at_s: float
    prompt: str


TOP_KEYS = ("seconds", "seed", "preset", "output", "settings", "segment")
SEGMENT_KEYS = ("at", "prompt")
_EPS = 1e-9


@dataclass(frozen=True)
class FramePlan:
    """Exact geometry of one video: `video_frames` = 4 * `latent_frames` - 3."""

    latent_frames: int
    blocks: int
    video_frames: int
    duration_s: float
    fps: int
    frames_per_block: int
    wanted_frames: int
    asked_s: float

    def block_start_frame(self, block: int) -> int:
        """Index of the first video frame of `block` (block 0 yields 4*fpb - 3 frames, later ones 4*fpb)."""
        return 0 if block == 0 else 4 * self.frames_per_block * block - 3

    def block_start_s(self, block: int) -> float:
        return self.block_start_frame(block) / self.fps

    def describe(self) -> str:
        """One line, e.g. '489 frames = 41 blocks x 3 latents (123) at 16 fps = 30.56 s, asked for 30 s'."""
        return (
            f"{self.video_frames} frames = {self.blocks} blocks x {self.frames_per_block} latents "
            f"({self.latent_frames}) at {self.fps} fps = {self.duration_s:.2f} s, "
            f"asked for {self.asked_s:g} s"
        )


def plan_frames(seconds: float, fps: int, frames_per_block: int) -> FramePlan:
    """Smallest whole-block latent count T whose 4T - 3 video frames cover ceil(seconds * fps)."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"length {seconds} s is not a positive number of seconds", "pass e.g. --seconds 30")
    if fps <= 0 or frames_per_block <= 0:
        raise ValueError(f"fps {fps} and frames_per_block {frames_per_block} must be positive")
    wanted = max(1, math.ceil(round(seconds * fps, 6)))
    latents = math.ceil((wanted + 3) / 4)
    latents = math.ceil(latents / frames_per_block) * frames_per_block
    video = 4 * latents - 3
    return FramePlan(
        latent_frames=latents,
        blocks=latents // frames_per_block,
        video_frames=video,
        duration_s=video / fps,
        fps=fps,
        frames_per_block=frames_per_block,
        wanted_frames=wanted,
        asked_s=seconds,
    )


class Switch(NamedTuple):
    """Segment `segment` (0-based) starts at block `block`; asked for `requested_s`, gets `effective_s`."""

    segment: int
    block: int
    requested_s: float
    effective_s: float


def check_text(text: str, what: str) -> str:
    """`text` unless it holds bytes that were not UTF-8: Python hands those over (from argv, or a
    JSON escape) as lone surrogates, which no tokenizer or file name can carry."""
    bad = next((i for i, c in enumerate(text) if "\ud800" <= c <= "\udfff"), None)
    if bad is not None:
        raise TimelineError(
            f"{what} is not valid UTF-8 text (character {bad + 1} is an undecodable byte)",
            "pass UTF-8 text (check the terminal's or the file's encoding)",
        )
    return text


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TimelineError(f"{where}: {key} = {value!r} is not a number", f"write {key} = <seconds>")
    return float(value)


def _segment_label(number: int, at: Any) -> str:
    return f"segment {number} (at = {at:g} s)" if isinstance(at, (int, float)) else f"segment {number}"


def _parse_segments(raw: Any, source: str) -> tuple[Segment, ...]:
    if not isinstance(raw, list) or not raw:
        raise TimelineError(
            f"{source} has no [[segment]] entries", 'add [[segment]] with at = 0 and prompt = "..."'
        )
    segments: list[Segment] = []
    for number, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict):
            raise TimelineError(f"{source}: segment {number} is not a table", "write [[segment]] tables")
        where = f"{source}: {_segment_label(number, entry.get('at'))}"
        for key in entry:
            if key not in SEGMENT_KEYS:
                raise TimelineError(f"{where} has unknown key '{key}'", suggest(key, SEGMENT_KEYS))
        if "at" not in entry:
            raise TimelineError(f"{where} has no 'at'", "write at = <seconds from the start>")
        at = _number(where, "at", entry["at"])
        prompt = entry.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise TimelineError(f"{where} has an empty prompt", 'write prompt = "what should happen"')
        check_text(prompt, f"{where}: the prompt")
        if at < 0:
            raise TimelineError(f"{where} starts before 0", "use a time >= 0")
        if number == 1 and at != 0:
            raise TimelineError(
                f"{where}: the first segment must start at 0", "set at = 0 on the first segment"
            )
        if segments and at == segments[-1].at_s:
            raise TimelineError(
                f"{where} starts at the same time as segment {number - 1}", "merge or move one"
            )
        if segments and at < segments[-1].at_s:
            raise TimelineError(
                f"{where} starts before segment {number - 1} (at = {segments[-1].at_s:g} s)",
                "list segments in time order",
            )
        segments.append(Segment(at_s=at, prompt=prompt.strip()))
    return tuple(segments)


@dataclass(frozen=True)
class Timeline:
    """Prompts over time plus optional render settings (CLI flags win over these)."""

    segments: tuple[Segment, ...]
    seconds: float | None = None
    seed: int | None = None
    preset: str | None = None
    output: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "timeline"

    @classmethod
    def from_prompt(cls, prompt: str, seconds: float | None = None) -> Timeline:
        if not prompt.strip():
            raise TimelineError("the prompt is empty", 'pass --prompt "what should happen"')
        check_text(prompt, "the prompt")
        return cls(segments=(Segment(at_s=0.0, prompt=prompt.strip()),), seconds=seconds, source="prompt")

    @classmethod
    def load(cls, path: Path) -> Timeline:
        """Read and check a timeline TOML file (everything but the video length)."""
        return cls.from_dict(load_toml(path, "timeline", TimelineError), source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "timeline") -> Timeline:
        for key in data:
            if key not in TOP_KEYS:
                raise TimelineError(f"{source}: unknown key '{key}'", suggest(key, TOP_KEYS))
        seconds = data.get("seconds")
        if seconds is not None:
            seconds = _number(source, "seconds", seconds)
            if seconds <= 0:
                raise TimelineError(f"{source}: seconds = {seconds:g} must be positive", "write seconds = 30")
        seed = data.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise TimelineError(f"{source}: seed = {seed!r} is not an integer >= 0", "write seed = 42")
        for key in ("preset", "output"):
            if key in data and (not isinstance(data[key], str) or not data[key]):
                raise TimelineError(
                    f"{source}: {key} = {data[key]!r} is not a string", f'write {key} = "..."'
                )
            if key in data:
                check_text(data[key], f"{source}: {key}")
        settings = data.get("settings", {})
        if not isinstance(settings, dict):
            raise TimelineError(f"{source}: settings must be a table", "write [settings.engine] ... tables")
        return cls(
            segments=_parse_segments(data.get("segment"), source),
            seconds=seconds,
            seed=seed,
            preset=data.get("preset"),
            output=data.get("output"),
            settings=settings,
            source=source,
        )

    def switch_blocks(self, plan: FramePlan) -> list[Switch]:
        """Where each segment starts: the first block boundary at or after its `at` (segment 0 -> block 0)."""
        switches: list[Switch] = []
        for index, seg in enumerate(self.segments):
            where = f"{self.source}: {_segment_label(index + 1, seg.at_s)}"
            if seg.at_s >= plan.duration_s - _EPS:
                raise TimelineError(
                    f"{where} starts at or past the end of the {plan.duration_s:.2f} s video",
                    "move it earlier or render more seconds",
                )
            block = next((b for b in range(plan.blocks) if plan.block_start_s(b) >= seg.at_s - _EPS), None)
            if block is None:
                last = plan.block_start_s(plan.blocks - 1)
                raise TimelineError(
                    f"{where} starts after the last block boundary ({last:.2f} s)",
                    f"move it to {last:.2f} s or earlier, or render more seconds",
                )
            if switches and block == switches[-1].block:
                prev = switches[-1]
                raise TimelineError(
                    f"{where} takes effect at the same block ({block}, {plan.block_start_s(block):.2f} s) "
                    f"as segment {index} (at = {prev.requested_s:g} s)",
                    f"space segments at least one block ({4 * plan.frames_per_block / plan.fps:.2f} s) apart",
                )
            switches.append(Switch(index, block, seg.at_s, plan.block_start_s(block)))
        return switches
