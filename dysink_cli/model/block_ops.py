"""The per-token elementwise chains of a Wan block, as pure functions with one signature each.

`EAGER` runs them as plain torch ops (the reference math; the fixtures' path). `compiled_ops()`
wraps the same functions in torch.compile, which fuses each chain into one or two kernels on the
GPU (LayerNorm + modulation, gated residual, q/k RMSNorm + RoPE): the DiT's elementwise traffic
was half of its time at 832x480 (bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.rope import RopeTable, apply_rope


def norm_modulate(x: Tensor, shift: Tensor, scale: Tensor, frames: int, eps: float) -> Tensor:
    """LayerNorm without affine, then per-frame x * (1 + scale) + shift. x (B, L, C); shift (B, F, 1, C)."""
    h = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return (h.unflatten(1, (frames, -1)) * (1 + scale) + shift).flatten(1, 2)


def gated_residual(x: Tensor, y: Tensor, gate: Tensor, frames: int) -> Tensor:
    """x + y * gate, the gate per frame (Wan block residuals)."""
    return x + (y.unflatten(1, (frames, -1)) * gate).flatten(1, 2)


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """Wan q/k RMSNorm over all channels: statistic in fp32, cast back, times weight."""
    return F.rms_norm(x.float(), (x.shape[-1],), eps=eps).type_as(x) * weight


def norm_rope(x: Tensor, weight: Tensor, eps: float, heads: int, table: RopeTable) -> tuple[Tensor, Tensor]:
    """(RoPE(RMSNorm(x)), RMSNorm(x)) split into heads: (B, L, H, D) each."""
    raw = rms_norm(x, weight, eps).unflatten(-1, (heads, -1))
    return apply_rope(raw, table), raw


def norm_rope_real(
    x: Tensor, weight: Tensor, eps: float, heads: int, cos: Tensor, sin: Tensor
) -> tuple[Tensor, Tensor]:
    """norm_rope for bf16/fp16 with fp32 cos/sin (1, L, Ht, D/2): real arithmetic that fuses."""
    raw = rms_norm(x, weight, eps).unflatten(-1, (heads, -1))
    pairs = raw.float().unflatten(-1, (-1, 2))
    re, im = pairs[..., 0], pairs[..., 1]
    roped = torch.stack([re * cos - im * sin, re * sin + im * cos], dim=-1).flatten(-2)
    return roped.to(x.dtype), raw


@dataclass(frozen=True)
class BlockOps:
    """The functions a block calls; `norm_rope` takes the RopeTable."""

    norm_modulate: Callable[..., Tensor]
    gated_residual: Callable[..., Tensor]
    rms_norm: Callable[..., Tensor]
    norm_rope: Callable[..., tuple[Tensor, Tensor]]


EAGER = BlockOps(norm_modulate, gated_residual, rms_norm, norm_rope)


def compiled_ops() -> BlockOps:
    """torch.compile'd chains (CUDA, bf16/fp16). Recompiles per distinct chunk length (few)."""
    compile_ = torch.compile(dynamic=False)
    fused_rope = compile_(norm_rope_real)

    def rope(x: Tensor, weight: Tensor, eps: float, heads: int, table: RopeTable) -> tuple[Tensor, Tensor]:
        return fused_rope(x, weight, eps, heads, table.cos32, table.sin32)

    return BlockOps(compile_(norm_modulate), compile_(gated_residual), compile_(rms_norm), rope)
