"""Procedural 2-D toy world: themed ground plus seeded landmarks, rendered analytically.

World(theme, seed).render(xy) draws views whose TOP-LEFT corner sits at world position xy
(world pixels, x right, y down; 1 world px = 1 output px). Positions may be fractional: edges are
anti-aliased, so every view is exact ground truth. camera_path() turns motion scripts into positions.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

RGB = tuple[float, float, float]

CAMERA_SPEED_PX_PER_FRAME = 2.0  # one "pan" step per video frame (16 fps -> 32 px/s)
# Pan when a prompt names no motion: right-down diagonal, each axis at half the camera speed.
DEFAULT_DRIFT: tuple[float, float] = (0.5 * CAMERA_SPEED_PX_PER_FRAME, 0.5 * CAMERA_SPEED_PX_PER_FRAME)
MOTIONS = ("left", "right", "up", "down", "still", "default")
_UNIT_STEPS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}

CELL_PX = 40  # one landmark slot per CELL_PX x CELL_PX world pixels
LANDMARK_PROBABILITY = 0.85  # a slot is empty otherwise
RADIUS_RANGE_PX = (4.0, 10.0)  # landmark half-size: 8-20 px across
OUTLINE_PX = 1.5
GLOW_PX = 4.0  # halo reach of glowing themes; landmarks stay GLOW_PX + 2 inside their cell
OUTLINE_RGB: RGB = (0.04, 0.04, 0.05)
NOISE_SPACING_PX = 24
VEIN_SPACING_PX = 30
_MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Theme:
    """Ground colour and texture amplitude, landmark kinds with fill colours, optional glow/veins."""

    ground_rgb: RGB
    texture_amp: float
    kinds: tuple[tuple[str, RGB], ...]
    glow: float = 0.0
    vein_rgb: RGB | None = None


THEME_STYLES: dict[str, Theme] = {
    "snow": Theme(
        (0.93, 0.95, 0.98),
        0.035,
        (("triangle", (0.13, 0.42, 0.24)), ("circle", (0.55, 0.75, 0.95)), ("star", (0.85, 0.2, 0.2))),
    ),
    "ocean": Theme(
        (0.08, 0.33, 0.72),
        0.06,
        (("circle", (1.0, 0.78, 0.1)), ("ring", (0.96, 0.96, 0.96)), ("diamond", (0.2, 0.85, 0.8))),
    ),
    "desert": Theme(
        (0.92, 0.8, 0.52),
        0.05,
        (("cross", (0.25, 0.6, 0.25)), ("triangle", (0.72, 0.5, 0.25)), ("circle", (0.55, 0.5, 0.46))),
    ),
    "meadow": Theme(
        (0.3, 0.68, 0.22),
        0.05,
        (("star", (1.0, 0.9, 0.2)), ("circle", (0.97, 0.97, 0.97)), ("diamond", (0.85, 0.4, 0.8))),
    ),
    "lava": Theme(
        (0.07, 0.05, 0.05),
        0.02,
        (("circle", (1.0, 0.4, 0.05)), ("diamond", (0.95, 0.15, 0.05)), ("star", (1.0, 0.72, 0.1))),
        glow=0.6,
        vein_rgb=(1.0, 0.3, 0.03),
    ),
    "night city": Theme(
        (0.03, 0.05, 0.16),
        0.02,
        (("square", (1.0, 0.9, 0.45)), ("circle", (0.6, 0.95, 1.0)), ("cross", (1.0, 0.3, 0.85))),
        glow=0.5,
    ),
    "forest": Theme(
        (0.07, 0.27, 0.1),
        0.04,
        (("triangle", (0.2, 0.55, 0.2)), ("circle", (0.45, 0.3, 0.15)), ("ring", (0.85, 0.15, 0.1))),
    ),
    "autumn": Theme(
        (0.85, 0.48, 0.1),
        0.05,
        (("diamond", (0.95, 0.85, 0.2)), ("circle", (0.75, 0.12, 0.08)), ("star", (0.45, 0.22, 0.08))),
    ),
    "mars": Theme(
        (0.55, 0.2, 0.12),
        0.05,
        (("ring", (0.38, 0.12, 0.08)), ("circle", (0.78, 0.78, 0.82)), ("square", (0.95, 0.95, 0.95))),
    ),
}
THEMES: tuple[str, ...] = tuple(THEME_STYLES)


def velocity(motion: str) -> tuple[float, float]:
    """Camera velocity (dx, dy) in world px per frame; y grows downward, so "up" is -y."""
    if motion == "default":
        return DEFAULT_DRIFT
    if motion not in _UNIT_STEPS:
        raise ValueError(f"unknown motion {motion!r}; expected one of {MOTIONS}")
    dx, dy = _UNIT_STEPS[motion]
    return dx * CAMERA_SPEED_PX_PER_FRAME, dy * CAMERA_SPEED_PX_PER_FRAME


def camera_path(start_xy: Sequence[float] | Tensor, motions: Sequence[tuple[str, int]]) -> Tensor:
    """(sum frames, 2) float64 camera positions; frame 0 is at start_xy.

    Frame k+1 = frame k + velocity(motion of frame k), so a segment of n frames moves the camera by
    n * velocity: after "right 64, left 64" the next frame (128) is back at start_xy exactly.
    """
    steps = []
    for motion, num_frames in motions:
        if num_frames < 0:
            raise ValueError(f"segment {motion!r} has {num_frames} frames; expected >= 0")
        steps += [velocity(motion)] * num_frames
    step = torch.tensor(steps, dtype=torch.float64).reshape(-1, 2)  # (T, 2)
    start = torch.as_tensor(start_xy, dtype=torch.float64).reshape(1, 2)
    return start + torch.cumsum(step, dim=0) - step


def _mix(h: Tensor | int) -> Tensor | int:  # Python ints or int64 tensors holding uint32 values
    """32-bit integer finaliser (Wellons' lowbias32 shape, multipliers < 2^31 so int64 never overflows)."""
    h = h ^ (h >> 16)
    h = (h * 0x7FEB352D) & _MASK32
    h = h ^ (h >> 15)
    h = (h * 0x2C1B3C6D) & _MASK32
    return h ^ (h >> 16)


def _byte(h: Tensor, shift: int) -> Tensor:
    """Bits shift..shift+7 of a hash as a float in [0, 1]."""
    return ((h >> shift) & 0xFF).float() / 255.0


def _split(i: Tensor, f: Tensor, cell: int) -> tuple[Tensor, Tensor]:
    """World coordinate i + f (int64, float in [0, 2)) -> (cell index, float offset in [0, cell))."""
    c = torch.div(i, cell, rounding_mode="floor")
    u = (i - c * cell).float() + f
    over = u >= cell
    return c + over.long(), torch.where(over, u - cell, u)


def _smooth01(t: Tensor) -> Tensor:
    return t * t * (3.0 - 2.0 * t)


def _coverage(signed_px: Tensor) -> Tensor:
    """Anti-aliased inside fraction: smoothstep over one pixel of signed distance (inside > 0)."""
    return _smooth01((signed_px + 0.5).clamp(0.0, 1.0))


def _value_noise(key: int, ix: Tensor, fx: Tensor, iy: Tensor, fy: Tensor, spacing: int) -> Tensor:
    """(N, H, W) value noise in [0, 1]: hashed lattice of `spacing` px, smoothstep-bilinear."""
    cx, ux = _split(ix, fx[:, None], spacing)  # (N, W)
    cy, uy = _split(iy, fy[:, None], spacing)  # (N, H)
    gx, gy = cx - cx[:, :1], cy - cy[:, :1]
    cols = cx[:, :1] + torch.arange(ix.shape[1] // spacing + 3, device=ix.device)  # (N, Gw)
    rows = cy[:, :1] + torch.arange(iy.shape[1] // spacing + 3, device=ix.device)  # (N, Gh)
    lattice = _byte(_mix(_mix(key ^ (rows & _MASK32))[:, :, None] ^ (cols[:, None, :] & _MASK32)), 8)
    n = torch.arange(ix.shape[0], device=ix.device)[:, None, None]
    tx, ty = _smooth01(ux / spacing)[:, None, :], _smooth01(uy / spacing)[:, :, None]
    y0, y1, x0, x1 = gy[:, :, None], gy[:, :, None] + 1, gx[:, None, :], gx[:, None, :] + 1
    top = torch.lerp(lattice[n, y0, x0], lattice[n, y0, x1], tx)
    bottom = torch.lerp(lattice[n, y1, x0], lattice[n, y1, x1], tx)
    return torch.lerp(top, bottom, ty)


def _sdf(kind: str, px: Tensor, py: Tensor, r: Tensor, length: Tensor) -> Tensor:
    """Signed distance (px, negative inside) to a landmark of half-size r centred at the origin."""
    ax, ay = px.abs(), py.abs()
    if kind == "circle":
        return length - r
    if kind == "ring":
        return (length - 0.7 * r).abs() - 0.3 * r
    if kind == "square":
        return torch.maximum(ax, ay) - 0.8 * r
    if kind == "diamond":
        return (ax + ay - r) * math.sqrt(0.5)
    if kind == "cross":
        arm = 0.35 * r
        return torch.minimum(torch.maximum(ax - r, ay - arm), torch.maximum(ax - arm, ay - r))
    if kind == "triangle":  # equilateral, circumradius r, tip up (image y grows down)
        return torch.maximum(py, 0.8660254 * ax - 0.5 * py) - 0.5 * r
    if kind == "star":
        return _sdf_star5(ax, -py, r, 0.45)
    raise ValueError(f"unknown landmark kind {kind!r}")


def _sdf_star5(x: Tensor, y: Tensor, r: Tensor, inner: float) -> Tensor:
    """Five-point star, tip up in y-up coordinates (Inigo Quilez, sdStar5)."""
    k1x, k1y = 0.809016994375, -0.587785252292
    dot = (k1x * x + k1y * y).clamp(min=0.0)
    x, y = x - 2.0 * dot * k1x, y - 2.0 * dot * k1y
    dot = (-k1x * x + k1y * y).clamp(min=0.0)
    x, y = (x + 2.0 * dot * k1x).abs(), y - 2.0 * dot * k1y - r
    bax, bay = -inner * k1y, inner * k1x - 1.0
    h = torch.minimum(((x * bax + y * bay) / (bax * bax + bay * bay)).clamp(min=0.0), r)
    return torch.hypot(x - bax * h, y - bay * h) * torch.sign(y * bax - x * bay)


def _ground_waves(key: int) -> list[tuple[int, int, int, float]]:
    """Two seeded oblique waves (a, b, period_px, weight): sin(2 pi (a x + b y) / period)."""
    rng = random.Random(key)
    dirs = [(a, b) for a in range(-2, 3) for b in range(-2, 3) if (a, b) != (0, 0)]
    return [(*rng.choice(dirs), rng.randrange(90, 260), w) for w in (0.4, 0.25)]


def _ground(style: Theme, key: int, ix: Tensor, fx: Tensor, iy: Tensor, fy: Tensor) -> Tensor:
    """(N, 3, H, W) ground: base colour + two waves + value noise (+ glowing veins)."""
    texture = 0.8 * (_value_noise(key ^ 0x1F, ix, fx, iy, fy, NOISE_SPACING_PX) - 0.5)  # (N, H, W)
    for a, b, period, weight in _ground_waves(key):
        cycles = torch.remainder(a * ix[:, None, :] + b * iy[:, :, None], period).float()
        cycles = (cycles + (a * fx + b * fy)[:, None, None]) / period
        texture = texture + weight * torch.sin(2 * math.pi * cycles)
    base = torch.tensor(style.ground_rgb, device=ix.device)[None, :, None, None]
    ground = base + style.texture_amp * texture[:, None]
    if style.vein_rgb is not None:
        n = _value_noise(key ^ 0x2E, ix, fx, iy, fy, VEIN_SPACING_PX)
        vein = ((1 - (n - 0.5).abs() / 0.04).clamp(0.0, 1.0) ** 2)[:, None]
        vein_rgb = torch.tensor(style.vein_rgb, device=ix.device)[None, :, None, None]
        ground = torch.lerp(ground, vein_rgb, vein)
    return ground


def _landmarks(
    style: Theme, key: int, ix: Tensor, fx: Tensor, iy: Tensor, fy: Tensor
) -> tuple[Tensor, Tensor]:
    """Signed distance (N, H, W) to each pixel's cell landmark, and its fill (N, 3, H, W).

    Cells are CELL_PX squares; each row of cells is shifted by a hashed offset (brick layout).
    A landmark (with outline and halo) stays inside its cell, so a pixel only asks its own cell.
    """
    row, v = _split(iy, fy[:, None], CELL_PX)  # (N, H)
    row_key = _mix(key ^ (row & _MASK32))  # (N, H)
    shift = (_mix(row_key ^ 0x3C) % CELL_PX)[:, :, None]  # (N, H, 1)
    col, u = _split(ix[:, None, :] - shift, fx[:, None, None], CELL_PX)  # (N, H, W)
    h1 = _mix(row_key[:, :, None] ^ (col & _MASK32))
    h2 = _mix(h1 ^ 0x5A)
    lo, hi = RADIUS_RANGE_PX
    r = lo + (hi - lo) * _byte(h1, 16)
    margin = r + GLOW_PX + 2.0
    px = u - (margin + (CELL_PX - 2 * margin) * _byte(h1, 24))
    py = v[:, :, None] - (margin + (CELL_PX - 2 * margin) * _byte(h2, 0))
    kind = ((h2 >> 16) & 0xFF) % len(style.kinds)
    length = torch.hypot(px, py)
    d = torch.full_like(px, 1e3)
    for k, (name, _) in enumerate(style.kinds):
        d = torch.where(kind == k, _sdf(name, px, py, r, length), d)
    d = torch.where(_byte(h1, 0) < LANDMARK_PROBABILITY, d, torch.full_like(d, 1e3))
    palette = torch.tensor([rgb for _, rgb in style.kinds], device=ix.device)  # (K, 3)
    shade = (0.85 + 0.25 * _byte(h2, 8))[:, None]
    return d, palette[kind].permute(0, 3, 1, 2) * shade


@dataclass(frozen=True)
class World:
    """An infinite themed map; the same (theme, seed) always draws the same place."""

    theme: str
    seed: int

    def __post_init__(self) -> None:
        if self.theme not in THEME_STYLES:
            raise ValueError(f"unknown theme {self.theme!r}; expected one of {THEMES}")

    @property
    def _key(self) -> int:
        return _mix(_mix(self.seed & _MASK32) ^ ((self.seed >> 32) & _MASK32) ^ THEMES.index(self.theme))

    def render(self, xy: Tensor, width: int = 128, height: int = 96) -> Tensor:
        """(N, 3, height, width) float32 RGB in [0, 1] of views whose top-left corners are xy (N, 2)."""
        if xy.ndim != 2 or xy.shape[1] != 2 or not xy.is_floating_point():
            raise ValueError(f"xy must be a float (N, 2) tensor, got {tuple(xy.shape)} {xy.dtype}")
        if width < 1 or height < 1:
            raise ValueError(f"view size must be positive, got {width}x{height}")
        style, key, dev = THEME_STYLES[self.theme], self._key, xy.device
        # 1. Integer + fractional camera split keeps hashes and phases exact at any distance.
        corner = torch.floor(xy)
        frac = (xy - corner).float() + 0.5  # pixel centres, in [0.5, 1.5)
        ix = corner[:, 0].long()[:, None] + torch.arange(width, device=dev)  # (N, W)
        iy = corner[:, 1].long()[:, None] + torch.arange(height, device=dev)  # (N, H)
        fx, fy = frac[:, 0], frac[:, 1]
        ground = _ground(style, key, ix, fx, iy, fy)  # (N, 3, H, W)
        d, fill = _landmarks(style, key, ix, fx, iy, fy)  # (N, H, W), (N, 3, H, W)
        # 2. Composite: ground, dark outline band, fill, and the optional halo of glowing themes.
        inside, filled = _coverage(-d)[:, None], _coverage(-(d + OUTLINE_PX))[:, None]
        outline = torch.tensor(OUTLINE_RGB, device=dev)[None, :, None, None]
        image = ground * (1 - inside) + outline * (inside - filled) + fill * filled
        if style.glow > 0:
            halo = style.glow * (1 - d / GLOW_PX).clamp(0.0, 1.0)[:, None] ** 2 * (1 - inside)
            image = image + halo * fill
        return image.clamp(0.0, 1.0)
