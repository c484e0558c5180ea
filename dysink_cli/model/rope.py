"""Wan2.1 3-axis RoPE on adjacent pairs, in float64, for any frame index (no 1024-row table).

Angles are `position * omega` computed on the fly, which is bit-identical to the reference table
inside its range. Temporal frequencies may differ per head (LoL multi-head jitter).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.model.config import DiTConfig


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
    """Per-axis frequencies, each (1, c) or (heads, c): per-head bases are LoL's jitter."""

    temporal: Tensor  # (1 | heads, c_t) float64
    height: Tensor  # (1 | heads, c_h) float64
    width: Tensor  # (1 | heads, c_w) float64


def wan_frequencies(
    head_dim: int,
    theta: float = 10000.0,
    temporal_theta: Tensor | None = None,
    spatial_theta: Tensor | None = None,
) -> RopeFrequencies:
    """Wan2.1 frequencies: dims 2c_t / 2c_h / 2c_w in the exponents (44/42/42 at head_dim 128).

    temporal_theta / spatial_theta: optional per-head bases (heads,) replacing theta on that axis.
    """
    ct, ch, cw = split_pairs(head_dim)
    t_theta = theta if temporal_theta is None else temporal_theta
    s_theta = theta if spatial_theta is None else spatial_theta
    return RopeFrequencies(
        axis_frequencies(2 * ct, t_theta).reshape(-1, ct),
        axis_frequencies(2 * ch, s_theta).reshape(-1, ch),
        axis_frequencies(2 * cw, s_theta).reshape(-1, cw),
    )


def jittered_thetas(
    num_heads: int,
    sigma: float,
    generator: torch.Generator,
    theta: float = 10000.0,
    heads_fraction: float = 1.0,
) -> Tensor:
    """LoL Alg. 1: theta_h = theta0 * (1 + sigma * eps_h), eps_h ~ U[-1, 1] (a fraction of heads)."""
    eps = torch.rand(num_heads, generator=generator, dtype=torch.float64) * 2 - 1  # (H,)
    jittered = int(round(heads_fraction * num_heads))
    eps[jittered:] = 0.0
    return theta * (1 + sigma * eps)


def lol_frequencies(
    cfg: DiTConfig,
    sigma: float,
    generator: torch.Generator,
    axes: str = "t",
    scope: str = "shared",
    heads_fraction: float = 1.0,
) -> RopeSpec:
    """LoL (arXiv 2601.16914, Alg. 1; paper-derived, no reference code): per-head jittered bases
    drawn from `generator`, on the axes named ("t", "h", "w"), one table shared by the layers or
    one per layer. sigma = 0 gives Wan's frequencies exactly (and draws nothing)."""
    if sigma == 0:
        return wan_frequencies(cfg.head_dim, cfg.rope_theta)

    def one() -> RopeFrequencies:
        thetas = jittered_thetas(cfg.num_heads, sigma, generator, cfg.rope_theta, heads_fraction)
        return wan_frequencies(
            cfg.head_dim,
            cfg.rope_theta,
            temporal_theta=thetas if "t" in axes else None,
            spatial_theta=thetas if ("h" in axes or "w" in axes) else None,
        )

    return [one() for _ in range(cfg.num_layers)] if scope == "per_layer" else one()


def rope_angles(freqs: RopeFrequencies, frames: Tensor, height: int, width: int) -> Tensor:
    """Angles for tokens of a (len(frames), height, width) grid in (f, y, x) order.

    frames: (F,) absolute temporal positions. Returns (Hr, F*height*width, c) float64 with
    c = c_t + c_h + c_w and Hr = 1 or heads.
    """
    frames = frames.to(torch.float64)
    heads = max(freqs.temporal.shape[0], freqs.height.shape[0], freqs.width.shape[0])
    nf, hw = frames.shape[0], height * width
    t = frames[None, :, None] * freqs.temporal[:, None, :]  # (Ht, F, c_t)
    t = t[:, :, None, :].expand(heads, nf, hw, -1)
    ys = torch.arange(height, dtype=torch.float64)
    xs = torch.arange(width, dtype=torch.float64)
    h = ys[None, :, None] * freqs.height[:, None, :]  # (Hh, height, c_h)
    w = xs[None, :, None] * freqs.width[:, None, :]  # (Hw, width, c_w)
    h = h[:, :, None, :].expand(heads, height, width, -1).reshape(heads, 1, hw, -1).expand(-1, nf, -1, -1)
    w = w[:, None, :, :].expand(heads, height, width, -1).reshape(heads, 1, hw, -1).expand(-1, nf, -1, -1)
    return torch.cat([t, h, w], dim=-1).reshape(heads, nf * hw, -1)


@dataclass(frozen=True)
class RopeTable:
    """cos/sin of the angles of one token grid, on the target device, ready for `rotate_pairs`.

    float64 (the reference's precision, used for float32/float64 activations) and a float32 copy
    for bf16/fp16 activations: their result is rounded to bf16 anyway, and fp32 needs 4x less
    memory traffic than the float64 round trip.
    """

    cos: Tensor  # (1, n, Ht, c) float64
    sin: Tensor  # (1, n, Ht, c) float64
    cos32: Tensor  # (1, n, Ht, c) float32
    sin32: Tensor  # (1, n, Ht, c) float32

    @classmethod
    def from_angles(cls, angles: Tensor, device: torch.device | str | None = None) -> RopeTable:
        a = angles.permute(1, 0, 2).unsqueeze(0)  # (1, n, Ht, c)
        if device is not None:
            a = a.to(device)
        cos, sin = torch.cos(a), torch.sin(a)
        return cls(cos, sin, cos.float(), sin.float())

    def for_dtype(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(cos, sin) in the precision used for activations of `dtype`."""
        if dtype in (torch.bfloat16, torch.float16):
            return self.cos32, self.sin32
        return self.cos, self.sin


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2j], x[2j+1]) of x (B, n, H, D) by angles given as cos/sin
    (1, n, Ht, D/2), computed in cos's dtype and cast back (Wan `rope_apply`'s complex multiply)."""
    pairs = x.to(cos.dtype).unflatten(-1, (-1, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    out = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


def apply_rope(x: Tensor, table: RopeTable) -> Tensor:
    """RoPE of x (B, n, H, D) with a table: float64 for float32/float64 inputs (bit-faithful to the
    reference), float32 for bf16/fp16."""
    return rotate_pairs(x, *table.for_dtype(x.dtype))


RopeSpec = RopeFrequencies | list[RopeFrequencies]  # one for all layers, or one per layer (LoL per_layer)
Rope = RopeTable | list[RopeTable]


def rope_tables(
    freqs: RopeSpec, frames: Tensor, height: int, width: int, device: torch.device | str | None = None
) -> Rope:
    """RopeTable(s) for a token grid: shared by all layers, or one per layer."""
    if isinstance(freqs, list):
        return [RopeTable.from_angles(rope_angles(f, frames, height, width), device) for f in freqs]
    return RopeTable.from_angles(rope_angles(freqs, frames, height, width), device)


def layer_table(rope: Rope, layer: int) -> RopeTable:
    return rope[layer] if isinstance(rope, list) else rope


def shift_temporal(x: Tensor, delta_frames: float, freqs: RopeFrequencies) -> Tensor:
    """Re-rotate already-roped keys (B, n, H, D) by delta_frames on the temporal axis only.

    Rotations compose, so a key written at frame p now reads as written at p + delta (the
    relative-RoPE clamp of retrieved and sink blocks). delta = 0 returns x unchanged.
    """
    if delta_frames == 0:
        return x
    t = delta_frames * freqs.temporal  # (Ht, c_t)
    zeros = torch.zeros(t.shape[0], freqs.height.shape[-1] + freqs.width.shape[-1], dtype=torch.float64)
    angles = torch.cat([t, zeros], dim=-1)[:, None, :]  # (Ht, 1, c)
    return apply_rope(x, RopeTable.from_angles(angles, x.device))


def layer_freqs(freqs: RopeSpec, layer: int) -> RopeFrequencies:
    return freqs[layer] if isinstance(freqs, list) else freqs
