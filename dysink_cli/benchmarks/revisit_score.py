"""Scores of `dysink bench revisit`: PSNR, SSIM and a search over small camera shifts (pure), the
ground truth they compare against (GroundTruth: exact toy-world views), and the PNG of PSNR over time.

Frames are float (N, 3, h, w) in [0, 1]; a reference is a canvas m px larger on every side, (N, 3,
h + 2m, w + 2m), so each shift (dx, dy) in [-m, m]^2 compares the whole frame: shift (dx, dy) means the
frame shows the reference's view moved by dx px right and dy px down. PSNR is capped at 100 dB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.benchmarks.revisit_scenarios import FAR_OFFSETS_PX, FPS, Scenario
from dysink_cli.toy.world import World

if TYPE_CHECKING:
    from dysink_cli.benchmarks.revisit import RevisitResult

MAX_SHIFT_PX = 4
MSE_FLOOR = 1e-10  # identical images: 100 dB, finite in JSON
SSIM_WINDOW_PX, SSIM_SIGMA_PX = 11, 1.5
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # (K1 L)^2, (K2 L)^2 with L = 1


def psnr(mse: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1], from their mean squared error."""
    return 10.0 * torch.log10(1.0 / mse.clamp_min(MSE_FLOOR))


def gaussian_window(size: int = SSIM_WINDOW_PX, sigma: float = SSIM_SIGMA_PX) -> Tensor:
    """(size,) normalised 1-D Gaussian; SSIM's 11 x 11 window (sigma 1.5) is its outer product."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """(N,) mean SSIM of image pairs (N, C, H, W) in [0, 1] (Wang et al. 2004, eq. 13): Gaussian
    window (separable), valid positions only, each channel apart."""
    if x.shape != y.shape:
        raise ValueError(f"ssim of shapes {tuple(x.shape)} and {tuple(y.shape)}")
    n, c, h, w = x.shape
    g = gaussian_window().to(x.device)
    rows, cols = g.view(1, 1, -1, 1), g.view(1, 1, 1, -1)
    x, y = x.float().reshape(n * c, 1, h, w), y.float().reshape(n * c, 1, h, w)  # (N C, 1, H, W)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, rows), cols)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    num = (2 * mx * my + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mx**2 + my**2 + SSIM_C1) * (vx + vy + SSIM_C2)
    return (num / den).reshape(n, -1).mean(dim=1)


def crop(canvas: Tensor, dx: int, dy: int, h: int, w: int) -> Tensor:
    """The (…, h, w) view of a canvas with margin m = (H - h) / 2, moved by (dx, dy)."""
    m = (canvas.shape[-2] - h) // 2
    return canvas[..., m + dy : m + dy + h, m + dx : m + dx + w]


def margin(frames: Tensor, canvas: Tensor) -> int:
    """The canvas's margin around the frames (equal on every side), checked."""
    h, w = frames.shape[-2:]
    m = (canvas.shape[-2] - h) // 2
    if canvas.shape[-2:] != (h + 2 * m, w + 2 * m) or m < 0:
        raise ValueError(f"canvas {tuple(canvas.shape[-2:])} is not frames {(h, w)} plus an even margin")
    return m


def shift_mse(frames: Tensor, canvas: Tensor) -> tuple[list[tuple[int, int]], Tensor]:
    """Every shift of the margin, and (S, N) mean squared errors of each frame at each."""
    m, (h, w) = margin(frames, canvas), frames.shape[-2:]
    shifts = [(dx, dy) for dy in range(-m, m + 1) for dx in range(-m, m + 1)]
    mse = torch.stack(
        [(frames - crop(canvas, dx, dy, h, w)).square().mean(dim=(1, 2, 3)) for dx, dy in shifts]
    )
    return shifts, mse


@dataclass(frozen=True)
class Score:
    """Mean PSNR (dB) and SSIM over frames at the one shift that fits them all best."""

    psnr: float
    ssim: float
    shift_px: tuple[int, int]


def score(frames: Tensor, canvas: Tensor) -> Score:
    """Frames (N, 3, h, w) against references (N or 1, 3, h + 2m, w + 2m): one shift for all N frames
    (the one of least mean error), then mean PSNR and mean SSIM at it."""
    canvas = canvas.expand(frames.shape[0], -1, -1, -1)
    shifts, mse = shift_mse(frames, canvas)
    best = int(mse.mean(dim=1).argmin())
    dx, dy = shifts[best]
    ref = crop(canvas, dx, dy, *frames.shape[-2:])
    return Score(float(psnr(mse[best]).mean()), float(ssim(frames, ref).mean()), (dx, dy))


def frame_psnr(frames: Tensor, canvas: Tensor) -> Tensor:
    """(N,) PSNR of each frame against its own reference at its own best shift (the time curve)."""
    _, mse = shift_mse(frames, canvas)
    return psnr(mse.min(dim=0).values)


def interior(frames: Tensor, m: int) -> Tensor:
    """Frames without an m px border: scored against whole generated frames as canvases."""
    return frames[..., m : frames.shape[-2] - m, m : frames.shape[-1] - m]


def to_unit(frames: Tensor) -> Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return frames.permute(0, 3, 1, 2).float() / 255.0


def finite(value: float, ndigits: int = 3) -> float:
    if not math.isfinite(value):
        raise ValueError(f"score {value} is not finite")
    return round(value, ndigits)


@dataclass
class Row:
    """One return (kind "return") or the new-ground control (kind "novel"), scored per policy."""

    kind: str
    place: str
    t: float
    frames: tuple[int, int]  # [first, end) scenario video frames
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t, 4),
            "place": self.place,
            "frames": list(self.frames),
            "scores": self.scores,
        }


class GroundTruth:
    """One scenario's exact views: `canvas` (frames, 3, h + 2m, w + 2m) in [0, 1], m = MAX_SHIFT_PX."""

    def __init__(self, scenario: Scenario, width: int = 128, height: int = 96) -> None:
        self.scenario, self.world = scenario, World(scenario.theme, scenario.seed)
        self.path, self.size, m = scenario.path(), (width, height), MAX_SHIFT_PX
        self.visits = scenario.visits()
        self.novel = scenario.novel_frames(self.path)
        self.canvas = self.world.render(self.path - m, width + 2 * m, height + 2 * m)

    def rows(self) -> list[Row]:
        """The returns, then the new-ground control."""
        rows = [Row("return", v.place, v.t, (v.first_frame, v.end_frame)) for v in self.visits if v.repeat]
        return [*rows, Row("novel", "new ground", self.novel[0] / FPS, self.novel)]

    def uint8(self, first: int, end: int) -> Tensor:
        """(T, h, w, 3) uint8 views of frames [first, end)."""
        m = MAX_SHIFT_PX
        view = self.canvas[first:end, :, m:-m, m:-m]
        return (view * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()

    def control(self, frames: Tensor, first: int, end: int) -> Score:
        """Frames [first, end) against the far, never-visited places of the same map: the mean score."""
        m, (w, h) = MAX_SHIFT_PX, self.size
        scores = []
        for offset in FAR_OFFSETS_PX:
            xy = self.path[first:end] + torch.tensor(offset, dtype=torch.float64)
            scores.append(score(frames, self.world.render(xy - m, w + 2 * m, h + 2 * m)))
        mean = sum(s.psnr for s in scores) / len(scores), sum(s.ssim for s in scores) / len(scores)
        return Score(*mean, (0, 0))

    def scores(self, given: Tensor, free: Tensor, row: Row) -> dict[str, Any]:
        """One policy's scores of a row: `given` (the render after the start frames) against the truth
        and the far controls, against the start's truth (returns elsewhere: pulled back?), and the
        free-running render `free` (every frame) against its own first visit and its new ground."""
        first, end = row.frames
        skip = self.scenario.context_frames
        frames = given[first - skip : end - skip]
        own, control = score(frames, self.canvas[first:end]), self.control(frames, first, end)
        out: dict[str, Any] = {
            "psnr": finite(own.psnr), "ssim": finite(own.ssim, 4), "shift_px": list(own.shift_px),
            "control_psnr": finite(control.psnr), "control_ssim": finite(control.ssim, 4),
        }  # fmt: skip
        if row.kind != "return":
            return out
        start = self.visits[0]
        if row.place != start.place:
            out["start_psnr"] = finite(score(frames, self.canvas[start.first_frame][None]).psnr)
        seen = next(v for v in self.visits if v.place == row.place)
        back = interior(free[first:end], MAX_SHIFT_PX)
        own = score(back, free[seen.end_frame - 1][None])
        control = score(back, free[(self.novel[0] + self.novel[1]) // 2][None])
        out["free"] = {
            "psnr": finite(own.psnr), "ssim": finite(own.ssim, 4), "shift_px": list(own.shift_px),
            "control_psnr": finite(control.psnr),
        }  # fmt: skip
        return out


def write_png(result: RevisitResult, path: Path) -> None:
    """PSNR of every generated frame against its truth over time, one panel per scenario; the ground
    truth start shaded grey, returns shaded green, the far controls' mean PSNR dashed."""
    from matplotlib.figure import Figure  # lazy: the CLI starts without matplotlib

    fig = Figure(figsize=(10, 3 * len(result.scenarios)), layout="constrained")
    axes = fig.subplots(len(result.scenarios), 1, squeeze=False)[:, 0]
    for ax, sr in zip(axes, result.scenarios, strict=True):
        s = sr.scenario
        ax.axvspan(0, s.context_frames / FPS, color="0.85", label="ground-truth start")
        for row in sr.rows:
            color = "tab:green" if row.kind == "return" else "tab:orange"
            ax.axvspan(row.frames[0] / FPS, row.frames[1] / FPS, color=color, alpha=0.25)
            ax.annotate(row.place, (row.frames[0] / FPS, 1.0), xycoords=("data", "axes fraction"),
                        va="top", fontsize=8)  # fmt: skip
        for policy, curve in sr.curves.items():
            t = (s.context_frames + torch.arange(len(curve))) / FPS
            ax.plot(t.tolist(), curve, lw=1, label=policy)
        controls = [sc["control_psnr"] for row in sr.rows for sc in row.scores.values()]
        if controls:
            ax.axhline(sum(controls) / len(controls), color="k", ls="--", lw=1, label="far-place control")
        ax.set_title(f"{s.name}: {s.description}", loc="left", fontsize=9)
        ax.set_xlabel("video time (s)")
        ax.set_ylabel("PSNR vs truth (dB)")
    axes[0].legend(fontsize=7, ncol=4, loc="lower left")
    fig.savefig(path, dpi=110)
