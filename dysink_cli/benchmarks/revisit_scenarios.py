"""The scenarios of `dysink bench revisit`: a toy-world map, a camera path of legs and the prompts whose
camera words drive it, laid out in whole render blocks (3 latents = 12 video frames, 0.75 s at 16 fps).

A leg is a motion held for whole blocks, so every prompt switch lands on a block boundary; a still leg
may name the place it holds (P0, P1, ...): a later still leg at a named place is a return. Pure
arithmetic over toy/world.py's camera_path and toy/captions.py's words; the render's frame plan is
timeline.plan_frames (block 0 yields 9 video frames, each later block 12).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.timeline import Segment, plan_frames
from dysink_cli.toy.world import MOTIONS, THEMES, camera_path

FPS = 16
LATENTS_PER_BLOCK = 3
# The control places: the same map, far from anything any path visits (their mean steadies the level).
FAR_OFFSETS_PX = ((-2048.0, 2048.0), (2048.0, -2048.0), (3072.0, 3072.0), (-3072.0, -3072.0))
THEME_PLACES = {"snow": "a snowy field", "desert": "a sandy desert", "meadow": "a green meadow"}


def block_start_frame(block: int) -> int:
    """First video frame of `block` (timeline.FramePlan.block_start_frame at 3 latents per block)."""
    return plan_frames(1.0, FPS, LATENTS_PER_BLOCK).block_start_frame(block)


def motion_words(motion: str) -> str:
    return "the camera holds still" if motion == "still" else f"the camera pans {motion}"


@dataclass(frozen=True)
class Leg:
    """`motion` (world.MOTIONS) for `blocks` whole blocks; a still leg may name its `place`."""

    motion: str
    blocks: int
    place: str | None = None

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS or self.motion == "default":
            raise ValueError(f"leg motion {self.motion!r} is not one of left, right, up, down, still")
        if self.blocks < 1:
            raise ValueError(f"a leg lasts at least one block, got {self.blocks}")
        if self.place is not None and self.motion != "still":
            raise ValueError(f"only a still leg holds a place; {self.motion} leg names {self.place!r}")


@dataclass(frozen=True)
class Visit:
    """The frames [first_frame, end_frame) of a still leg at `place`; `repeat`: visited before."""

    place: str
    first_frame: int
    end_frame: int
    repeat: bool

    @property
    def t(self) -> float:
        return self.first_frame / FPS


@dataclass(frozen=True)
class Scenario:
    """A map (theme, seed), a start position and legs; the first `context_blocks` blocks are handed to
    the render as ground-truth start frames (they must lie inside the first leg)."""

    name: str
    theme: str
    seed: int
    legs: tuple[Leg, ...]
    description: str
    start_xy: tuple[float, float] = (0.0, 0.0)
    context_blocks: int = 1

    def __post_init__(self) -> None:
        if self.theme not in THEMES or self.theme not in THEME_PLACES:
            raise ValueError(f"scenario theme {self.theme!r} is not one of {tuple(THEME_PLACES)}")
        if not 1 <= self.context_blocks <= self.legs[0].blocks:
            raise ValueError(
                f"{self.name}: {self.context_blocks} context blocks do not fit the first leg "
                f"({self.legs[0].blocks} blocks)"
            )

    @property
    def blocks(self) -> int:
        return sum(leg.blocks for leg in self.legs)

    @property
    def frames(self) -> int:
        return block_start_frame(self.blocks)

    @property
    def context_frames(self) -> int:
        return block_start_frame(self.context_blocks)

    def leg_starts(self) -> list[int]:
        """The block at which each leg starts."""
        starts, block = [], 0
        for leg in self.legs:
            starts.append(block)
            block += leg.blocks
        return starts

    def prompt(self, motion: str) -> str:
        return f"{THEME_PLACES[self.theme]}, {motion_words(motion)}"

    def prompts(self) -> list[str]:
        return list(dict.fromkeys(self.prompt(leg.motion) for leg in self.legs))

    def segments(self, first_block: int) -> tuple[Segment, ...]:
        """The timeline of a render whose block 0 is the scenario's `first_block`: the leg holding
        that block starts at 0 s, each later leg at its first block's start."""
        out: list[Segment] = []
        for leg, start in zip(self.legs, self.leg_starts(), strict=True):
            if start + leg.blocks <= first_block:
                continue
            at = block_start_frame(max(0, start - first_block)) / FPS
            out.append(Segment(at, self.prompt(leg.motion)))
        return tuple(out)

    def path(self) -> Tensor:
        """(frames, 2) float64 top-left camera positions of every video frame."""
        motions, frame = [], 0
        for leg, start in zip(self.legs, self.leg_starts(), strict=True):
            end = block_start_frame(start + leg.blocks)
            motions.append((leg.motion, end - frame))
            frame = end
        return camera_path(self.start_xy, motions)

    def visits(self) -> list[Visit]:
        """Every still leg at a named place, in order; a place seen before is a return."""
        seen: set[str] = set()
        out = []
        for leg, start in zip(self.legs, self.leg_starts(), strict=True):
            if leg.place is None:
                continue
            first, end = block_start_frame(start), block_start_frame(start + leg.blocks)
            out.append(Visit(leg.place, first, end, leg.place in seen))
            seen.add(leg.place)
        return out

    def novel_frames(self, path: Tensor) -> tuple[int, int]:
        """[first, end) frames of the first generated block whose mean position is farthest from the
        start: new ground, which no policy can remember (the no-memory level)."""
        start = torch.tensor(self.start_xy, dtype=torch.float64)
        best, where = -1.0, (0, 0)
        for block in range(self.context_blocks, self.blocks):
            first, end = block_start_frame(block), block_start_frame(block + 1)
            distance = float((path[first:end].mean(0) - start).norm())
            if distance > best + 1e-9:
                best, where = distance, (first, end)
        return where


def scenarios(small: bool = False) -> dict[str, Scenario]:
    """`start`, `middle` and `long`; `small` makes every leg one block (0.75 s, 24 px) for a CPU run."""
    out, far, side = (1, 1, 1) if small else (5, 8, 11)  # blocks: 3.75 s / 6 s / 8.25 s when full
    linger = 1 if small else 2
    start = Scenario(
        "start", "snow", 11,
        (Leg("still", 1, "P0"), *(Leg("right", out), Leg("left", out), Leg("still", 1, "P0")) * 3),
        f"return to the start: out for {out * 0.75:g} s and back, three times",
    )  # fmt: skip
    middle = Scenario(
        "middle", "desert", 12,
        (Leg("still", 1, "P0"), Leg("right", out), Leg("still", 1 if small else 3, "P1"), Leg("right", far),
         Leg("still", 1, "P2"), Leg("left", far), Leg("still", linger, "P1"), Leg("left", out),
         Leg("still", linger, "P0")),
        "return to the middle: P0, on to P1 and linger, on to P2, back to P1, then to P0",
    )  # fmt: skip
    long = Scenario(
        "long", "meadow", 13,
        (Leg("still", 1, "P0"), Leg("right", side), Leg("down", side), Leg("left", side), Leg("up", side),
         Leg("still", linger, "P0")),
        f"long absence: a square loop of {4 * side * 0.75:g} s back to the start",
    )  # fmt: skip
    return {s.name: s for s in (start, middle, long)}
