"""Training data drawn on the fly from the toy world: camera paths, rendered clips, captions.

All randomness comes from one `random.Random` (layouts, places, captions) handed in by the
trainer, so a resumed run draws what an uninterrupted one would. Views are rendered on the
device of the tensors asked for. Frames are [0, 1] here; the VAE wants [-1, 1].
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.toy.captions import random_caption
from dysink_cli.toy.world import MOTIONS, THEMES, World, camera_path, velocity

WIDTH, HEIGHT = 128, 96
FRAMES_PER_BLOCK = 3  # latent frames
PIXELS_PER_LATENT = 4  # temporal stride: latent 0 holds frame 0 alone, latent k frames 4k-3..4k
PREROLL_FRAMES = 9  # 1 + 2 * 4 frames encoded before a clip that does not start the video
PREROLL_LATENTS = 3
WORLD_SPAN_PX = 20000.0
REVISIT_PROBABILITY = 0.6
OPENING_PROBABILITY = 0.25


@dataclass(frozen=True)
class MotionMix:
    """How a teacher-forcing batch is drawn: the share of openings (sample_layout), the share of
    samples whose context moves otherwise than the prompt says, and of those the share whose context
    holds still (0: any other motion alike). The defaults are the "dit" stages' draws."""

    openings: float = OPENING_PROBABILITY
    switch: float = 0.25
    still: float = 0.0


TEACHER_MIX = MotionMix()
CAMERA_MIX = MotionMix(openings=0.35, switch=0.75, still=0.4)  # the "camera" stage: start and stop
PAN_MIX = MotionMix(openings=0.0)  # the "pan" stage trains a block after its own context
CLIP_MIX = MotionMix(openings=0.0, switch=0.0)  # "clip" (train_clip.py): one motion, the prompt's
STAGE_MIX = {"camera": CAMERA_MIX, "pan": PAN_MIX, "clip": CLIP_MIX}  # the others draw TEACHER_MIX
CLIP_BLOCKS = 3  # the clip teacher's clips: 9 latent frames, 33 or 36 video frames


def random_world(rng: random.Random) -> World:
    return World(rng.choice(THEMES), rng.getrandbits(48))


def other_motion(rng: random.Random, motion: str) -> str:
    return rng.choice([m for m in MOTIONS if m != motion])


def random_start(rng: random.Random) -> tuple[float, float]:
    return (rng.uniform(-WORLD_SPAN_PX, WORLD_SPAN_PX), rng.uniform(-WORLD_SPAN_PX, WORLD_SPAN_PX))


def render_groups(
    worlds: list[World],
    paths: list[list[Tensor]],
    device: torch.device,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> list[list[Tensor]]:
    """Each world renders all its paths in one call: paths[g][i] (N_i, 2) -> frames (N_i, 3, H, W)."""
    out = []
    for world, group in zip(worlds, paths, strict=True):
        xy = torch.cat(group).to(device)
        frames = world.render(xy, *size)  # (sum N_i, 3, H, W)
        out.append(list(frames.split([len(p) for p in group])))
    return out


def clip_path(rng: random.Random, frames: int) -> Tensor:
    """A random clip's camera: one or two motion segments from a random place."""
    first = rng.choice(MOTIONS)
    cut = rng.randrange(frames + 1) if rng.random() < 0.4 else frames
    return camera_path(random_start(rng), [(first, cut), (other_motion(rng, first), frames - cut)])


def vae_clips(
    rng: random.Random, worlds: int, per_world: int, frames: int, device: torch.device,
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Tensor:  # fmt: skip
    """(worlds * per_world, 3, frames, H, W) clips in [-1, 1] for the VAE."""
    ws = [random_world(rng) for _ in range(worlds)]
    paths = [[clip_path(rng, frames) for _ in range(per_world)] for _ in ws]
    clips = [c for group in render_groups(ws, paths, device, size) for c in group]
    return torch.stack(clips).transpose(1, 2) * 2 - 1


@dataclass(frozen=True)
class Layout:
    """What one DiT batch holds (shared by its samples; places, frames and prompts differ).

    chain_blocks consecutive blocks, each attending to at most window_blocks before it; far
    blocks are "memory" (retrieved, attended by the last block's noisy passes only) or "sink"
    (block 0, attended by every call); from_start: the chain begins the video at frame 0.
    """

    chain_blocks: int
    window_blocks: int
    far: str  # "none" | "memory" | "sink"
    far_blocks: int
    from_start: bool


def sample_layout(rng: random.Random, openings: float = OPENING_PROBABILITY) -> Layout:
    """A teacher-forcing batch's layout; `openings` of them are openings (only the prompt says what
    to draw there, and ~15 % of the other layouts begin at frame 0 as well)."""
    if rng.random() < openings:
        return opening_layout(rng)
    window = rng.choices((1, 2, 3), weights=(0.15, 0.7, 0.15))[0]
    far = rng.choices(("none", "memory", "sink"), weights=(0.3, 0.55, 0.15))[0]
    far_blocks = {"none": 0, "memory": rng.choice((1, 2, 2)), "sink": 1}[far]
    from_start = far == "none" and rng.random() < 0.5
    return Layout(window + 1, window, far, far_blocks, from_start)


def stage_layout(rng: random.Random, stage: str, mix: MotionMix) -> Layout:
    """A batch's layout for `stage`: openings for "text", whole clips for "clip" (half of them from
    the start of a video), else sample_layout's."""
    if stage == "text":
        return opening_layout(rng)
    if stage == "clip":
        return Layout(CLIP_BLOCKS, CLIP_BLOCKS - 1, "none", 0, rng.random() < 0.5)
    return sample_layout(rng, mix.openings)


def opening_layout(rng: random.Random) -> Layout:
    """The start of a video: its first block alone, or the first two (the second sees the first)."""
    blocks = rng.choices((1, 2), weights=(0.75, 0.25))[0]
    return Layout(blocks, blocks - 1, "none", 0, True)


@dataclass
class DiTSample:
    """One sample's plan: prompt, frame indices (latent), camera paths (pixel frames)."""

    theme: str
    motion: str
    caption: str
    chain_start: int
    far_starts: list[int]
    chain_path: Tensor
    far_paths: list[Tensor]


def _unit(motion: str, rng: random.Random) -> tuple[float, float]:
    dx, dy = velocity(motion)
    norm = math.hypot(dx, dy)
    if norm == 0:
        angle = rng.uniform(0, 2 * math.pi)
        return math.cos(angle), math.sin(angle)
    return dx / norm, dy / norm


def context_motion(rng: random.Random, motion: str, mix: MotionMix) -> str:
    """The camera motion of a sample's context blocks: the prompt's unless it switches (see MotionMix)."""
    if rng.random() < 1 - mix.switch:
        return motion
    if mix.still and motion != "still" and rng.random() < mix.still:
        return "still"
    return other_motion(rng, motion)


def plan_sample(rng: random.Random, world: World, layout: Layout, mix: MotionMix = TEACHER_MIX) -> DiTSample:
    """Frames, prompt and camera paths of one sample (see Layout); the context's motion by `mix`."""
    fpb, n = FRAMES_PER_BLOCK, layout.chain_blocks
    motion = rng.choice(MOTIONS)
    ctx_motion = context_motion(rng, motion, mix)
    far_starts: list[int] = []
    if layout.from_start:
        chain_start = 0
    elif layout.far == "memory":
        gaps = sorted(
            {fpb * round(math.exp(rng.uniform(math.log(4), math.log(80)))) for _ in range(layout.far_blocks)}
        )
        while len(gaps) < layout.far_blocks:
            gaps.append(gaps[-1] + fpb)
        target = fpb * rng.randrange(max(g // fpb for g in gaps) + 1, 120)
        far_starts = sorted(target - g for g in gaps)
        chain_start = target - fpb * (n - 1)
    else:
        chain_start = fpb * rng.randrange(1, 100)
        far_starts = [0] if layout.far == "sink" else []
    target = chain_start + fpb * (n - 1)
    clip_first = 0 if layout.from_start else PIXELS_PER_LATENT * chain_start - 3 - PREROLL_FRAMES
    total = fpb * n * PIXELS_PER_LATENT - (3 if layout.from_start else -PREROLL_FRAMES)
    ctx_frames = max(0, PIXELS_PER_LATENT * target - 3 - clip_first)
    chain_path = camera_path(random_start(rng), [(ctx_motion, ctx_frames), (motion, total - ctx_frames)])
    at_target = chain_path[min(ctx_frames, total - 1)]
    far_paths = [_far_path(rng, at_target, motion, start == 0) for start in far_starts]
    caption = random_caption(rng, world.theme, motion)
    return DiTSample(world.theme, motion, caption, chain_start, far_starts, chain_path, far_paths)


def _far_path(rng: random.Random, target_xy: Tensor, motion: str, first_block: bool) -> Tensor:
    """A far block's camera: near the target's view (a revisit) or somewhere else in the world."""
    frames = fpb_pixels(first_block)
    path = camera_path((0.0, 0.0), [(rng.choice(MOTIONS), frames)])
    if rng.random() < REVISIT_PROBABILITY:
        ux, uy = _unit(motion, rng)
        along, across = rng.uniform(-16, 72), rng.uniform(-16, 16)
        offset = (along * ux - across * uy, along * uy + across * ux)
    else:
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(300, 3000)
        offset = (dist * math.cos(angle), dist * math.sin(angle))
    centre = target_xy.double() + torch.tensor(offset, dtype=torch.float64)
    mid = path[frames - 6]
    return path - mid + centre


def fpb_pixels(first_block: bool) -> int:
    """Pixel frames rendered for one stand-alone block: 9 for the video's first, else pre-roll + 12."""
    n = FRAMES_PER_BLOCK * PIXELS_PER_LATENT
    return n - 3 if first_block else PREROLL_FRAMES + n


@dataclass
class DiTBatch:
    """A rendered batch (frames in [-1, 1]); latents are added by the trainer's frozen VAE."""

    layout: Layout
    samples: list[DiTSample]
    chain_video: Tensor  # (B, 3, F, H, W)
    far_video: Tensor | None  # (B * far_blocks, 3, F', H, W)

    @property
    def captions(self) -> list[str]:
        return [s.caption for s in self.samples]

    def chain_starts(self) -> Tensor:
        return torch.tensor([s.chain_start for s in self.samples])

    def far_starts(self) -> Tensor:
        return torch.tensor([s.far_starts for s in self.samples])  # (B, far_blocks)


def dit_batch(
    rng: random.Random, layout: Layout, worlds: int, per_world: int, device: torch.device,
    size: tuple[int, int] = (WIDTH, HEIGHT), mix: MotionMix = TEACHER_MIX,
) -> DiTBatch:  # fmt: skip
    """Plan and render one DiT batch: `worlds` worlds, `per_world` samples each (plan_sample's mix)."""
    ws = [random_world(rng) for _ in range(worlds)]
    samples = [[plan_sample(rng, w, layout, mix) for _ in range(per_world)] for w in ws]
    paths = [[p for s in group for p in (s.chain_path, *s.far_paths)] for group in samples]
    rendered = render_groups(ws, paths, device, size)
    per = 1 + layout.far_blocks
    chain = [views[i * per] for views in rendered for i in range(per_world)]
    far = [
        views[i * per + 1 + j]
        for views in rendered
        for i in range(per_world)
        for j in range(layout.far_blocks)
    ]
    flat = [s for group in samples for s in group]
    chain_video = torch.stack(chain).transpose(1, 2) * 2 - 1
    far_video = torch.stack(far).transpose(1, 2) * 2 - 1 if far else None
    return DiTBatch(layout, flat, chain_video, far_video)
