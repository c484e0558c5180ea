"""Model-free measures of a toy-world video against what its prompt asked for (issue 13's checks):
which theme a frame shows (a nearest-centroid classifier fitted on exact ground-truth frames),
where the camera moves (phase correlation between frames a few apart), and whether contrast
holds over time (no drift to grey). Pure functions over frames [T, 3, H, W] in [0, 1].
Imports toy.world and torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.toy.world import THEMES, World, velocity

FIT_SEEDS = (101, 102, 103)  # maps the classifier is fitted on (tests score it on others)
PHASE_LOWPASS = 0.07  # cycles per pixel: phase correlation's low-pass (see phase_shift)


def colour_features(frames: Tensor) -> Tensor:
    """[T, 3, H, W] -> [T, 12]: per-channel mean, std, and the 10th / 90th percentiles."""
    flat = frames.flatten(2)
    q = torch.quantile(flat, torch.tensor([0.1, 0.9], dtype=flat.dtype), dim=2)  # [2, T, 3]
    return torch.cat([flat.mean(2), flat.std(2), q[0], q[1]], dim=1)


@dataclass(frozen=True)
class ThemeClassifier:
    """Nearest centroid in colour-feature space, one centroid per theme."""

    centroids: Tensor  # [themes, 12]
    scale: Tensor  # [12] feature spread, so no feature dominates

    @classmethod
    def fit(cls, views_per_map: int = 16, size: tuple[int, int] = (128, 96)) -> ThemeClassifier:
        gen = torch.Generator().manual_seed(0)
        per_theme = []
        for theme in THEMES:
            feats = [
                colour_features(
                    World(theme, seed).render(torch.rand(views_per_map, 2, generator=gen) * 4000, *size)
                )
                for seed in FIT_SEEDS
            ]
            per_theme.append(torch.cat(feats))
        everything = torch.cat(per_theme)
        scale = everything.std(0).clamp_min(1e-3)
        return cls(torch.stack([f.mean(0) for f in per_theme]) / scale, scale)

    def predict(self, frames: Tensor) -> list[str]:
        dist = torch.cdist(colour_features(frames) / self.scale, self.centroids)
        return [THEMES[i] for i in dist.argmin(1).tolist()]

    def share(self, frames: Tensor, theme: str) -> float:
        """The fraction of frames recognised as `theme`."""
        return sum(p == theme for p in self.predict(frames)) / len(frames)


def phase_shift(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(dx, dy) in pixels that moves image a onto image b (phase correlation on luminance, with a
    parabolic sub-pixel peak). a, b: [3, H, W].

    A Hann window hides the frame's borders (a wrap-around edge votes for no motion) and a Gaussian
    low-pass (PHASE_LOWPASS cycles per pixel) on the whitened spectrum keeps a faint static pattern
    (a decoder's fixed texture, which whitening lifts to full weight) from winning at shift 0."""
    ga, gb = a.mean(0), b.mean(0)
    h, w = ga.shape
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    ga, gb = (ga - ga.mean()) * window, (gb - gb.mean()) * window
    cross = torch.fft.fft2(gb) * torch.fft.fft2(ga).conj()
    fy, fx = torch.fft.fftfreq(h)[:, None], torch.fft.fftfreq(w)[None]
    lowpass = torch.exp(-(fx.square() + fy.square()) / (2 * PHASE_LOWPASS**2))
    corr = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-9) * lowpass).real
    h, w = corr.shape
    iy, ix = divmod(int(corr.argmax()), w)

    def refine(c_minus: float, c0: float, c_plus: float) -> float:
        denom = c_minus - 2 * c0 + c_plus
        return 0.0 if abs(denom) < 1e-12 else 0.5 * (c_minus - c_plus) / denom

    dx = ix + refine(float(corr[iy, ix - 1]), float(corr[iy, ix]), float(corr[iy, (ix + 1) % w]))
    dy = iy + refine(float(corr[iy - 1, ix]), float(corr[iy, ix]), float(corr[(iy + 1) % h, ix]))
    return (dx - w if dx > w / 2 else dx), (dy - h if dy > h / 2 else dy)


def camera_velocity(frames: Tensor, gap: int = 4) -> tuple[float, float]:
    """The camera's median velocity in px per frame (the content moves the other way)."""
    shifts = [phase_shift(frames[t], frames[t + gap]) for t in range(len(frames) - gap)]
    if not shifts:
        raise ValueError(f"need more than {gap} frames to measure motion")
    dx = torch.tensor([s[0] for s in shifts]).median().item()
    dy = torch.tensor([s[1] for s in shifts]).median().item()
    return -dx / gap, -dy / gap


def speed_along(v: tuple[float, float], motion: str) -> float:
    """The component of a camera velocity (px per frame) along `motion`'s direction (0 when still)."""
    want = velocity(motion)
    return (v[0] * want[0] + v[1] * want[1]) / max(1e-9, math.hypot(*want))


def contrast_trend(frames: Tensor, window: int) -> tuple[float, float]:
    """Mean per-frame contrast (luminance std) of the first and the last `window` frames."""
    contrast = frames.mean(1).flatten(1).std(1)
    return contrast[:window].mean().item(), contrast[-window:].mean().item()


def edge_sharpness(frames: Tensor, top: float = 0.02) -> float:
    """Mean luminance gradient magnitude of each frame's sharpest `top` share of pixels, averaged
    over frames: outlined shapes score high, blobs and flat fields low."""
    grey = frames.mean(1)  # [T, H, W]
    gx, gy = grey.diff(dim=2)[:, :-1, :], grey.diff(dim=1)[:, :, :-1]
    magnitude = (gx.square() + gy.square()).sqrt().flatten(1)
    k = max(1, int(top * magnitude.shape[1]))
    return magnitude.topk(k, dim=1).values.mean().item()
