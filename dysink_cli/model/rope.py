"""Wan2.1 3-axis RoPE on adjacent pairs, in float64, for any frame index (no 1024-row table).

Angles are `position * omega` computed on the fly, which is bit-identical to the reference table
inside its range. Temporal frequencies may differ per head (LoL multi-head jitter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def axis_frequencies(dim: int, theta: float | Tensor = 10000.0) -> Tensor:
    """omega_j = 1 / theta^(2j/dim), j < dim/2, float64 (Wan `rope_params`). theta may be [H]."""
    exponents = torch.arange(0, dim, 2, dtype=torch.float64).div(dim)  # (dim/2,)
    theta = torch.as_tensor(theta, dtype=torch.float64)
    return 1.0 / torch.pow(theta.unsqueeze(-1), exponents)  # (..., dim/2)


def split_pairs(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (t, h, w): c - 2(c//3), c//3, c//3 with c = head_dim/2."""
    c = head_dim // 2
    return c - 2 * (c // 3), c // 3, c // 3


@dataclass(frozen=True)
class RopeFrequencies:
    """Per-axis frequencies. `temporal` is (1, c_t) or (heads, c_t) with per-head bases (LoL)."""

    temporal: Tensor  # (Ht, c_t) float64, Ht in {1, heads}
    height: Tensor  # (c_h,) float64
    width: Tensor  # (c_w,) float64

    @property
    def num_pairs(self) -> int:
        return self.temporal.shape[-1] + self.height.shape[-1] + self.width.shape[-1]


def wan_frequencies(head_dim: int, theta: float = 10000.0, temporal_theta: Tensor | None = None) -> RopeFrequencies:
    """Wan2.1 frequencies: dims 2c_t / 2c_h / 2c_w in the exponents (44/42/42 at head_dim 128)."""
    ct, ch, cw = split_pairs(head_dim)
    t_theta = theta if temporal_theta is None else temporal_theta
    temporal = axis_frequencies(2 * ct, t_theta).reshape(-1, ct)
    return RopeFrequencies(temporal, axis_frequencies(2 * ch, theta), axis_frequencies(2 * cw, theta))


def jittered_thetas(num_heads: int, sigma: float, generator: torch.Generator, theta: float = 10000.0,
                    heads_fraction: float = 1.0) -> Tensor:
    """LoL Alg. 1: theta_h = theta0 * (1 + sigma * eps_h), eps_h ~ U[-1, 1] (a fraction of heads)."""
    eps = torch.rand(num_heads, generator=generator, dtype=torch.float64) * 2 - 1  # (H,)
    jittered = int(round(heads_fraction * num_heads))
    eps[jittered:] = 0.0
    return theta * (1 + sigma * eps)


def rope_angles(freqs: RopeFrequencies, frames: Tensor, height: int, width: int) -> Tensor:
    """Angles for tokens of a (len(frames), height, width) grid in (f, y, x) order.

    frames: (F,) absolute temporal positions (float64 or int). Returns (Ht, F*height*width, c)
    float64 with c = c_t + c_h + c_w, Ht = 1 or heads.
    """
    frames = frames.to(torch.float64)
    heads = freqs.temporal.shape[0]
    n = frames.shape[0] * height * width
    t = frames[None, :, None] * freqs.temporal[:, None, :]  # (Ht, F, c_t)
    t = t[:, :, None, :].expand(heads, frames.shape[0], height * width, -1).reshape(heads, n, -1)
    ys = torch.arange(height, dtype=torch.float64)
    xs = torch.arange(width, dtype=torch.float64)
    h = (ys[:, None] * freqs.height[None, :])[:, None, :].expand(height, width, -1).reshape(height * width, -1)
    w = (xs[:, None] * freqs.width[None, :])[None, :, :].expand(height, width, -1).reshape(height * width, -1)
    hw = torch.cat([h, w], dim=-1).repeat(frames.shape[0], 1)  # (n, c_h + c_w)
    return torch.cat([t, hw[None].expand(heads, -1, -1)], dim=-1)


@dataclass(frozen=True)
class RopeTable:
    """cos/sin of the angles for one token grid, ready for `apply_rope` (on the target device)."""

    cos: Tensor  # (1, n, Ht, c) float64
    sin: Tensor  # (1, n, Ht, c) float64

    @classmethod
    def from_angles(cls, angles: Tensor, device: torch.device | str | None = None) -> RopeTable:
        a = angles.permute(1, 0, 2).unsqueeze(0)  # (1, n, Ht, c)
        if device is not None:
            a = a.to(device)
        return cls(torch.cos(a), torch.sin(a))


def apply_rope(x: Tensor, table: RopeTable) -> Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) by the table's angles in float64; cast back.

    x: (B, n, H, D). Wan `rope_apply`: complex multiply by e^{i angle}.
    """
    b, n, h, d = x.shape
    xd = x.to(torch.float64).reshape(b, n, h, d // 2, 2)
    re, im = xd[..., 0], xd[..., 1]
    cos, sin = table.cos, table.sin
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.reshape(b, n, h, d).to(x.dtype)
