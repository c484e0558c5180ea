"""A Wan block's token-wise work between its attention calls, as three pure functions.

A block is: `attn_in` (LayerNorm + modulation, q/k/v projections, q/k RMSNorm, RoPE) -> self-
attention (the engine's cache, memory and gate) -> `attn_out` (output projection, gated residual,
cross-attention norm and query) -> cross-attention -> `ffn_out` (output projection, residual,
LayerNorm + modulation, FFN, gated residual). The functions take tensors only (weights included),
so one torch.compile of each serves all 30 layers.

`EAGER` runs them as plain torch ops (the reference math; the fixtures' path). `compiled_ops()`
wraps the same functions in torch.compile, which fuses each elementwise chain into the GEMMs'
neighbours on the GPU: at 832x480 the eager chains cost ~27 ms of a ~78 ms forward
(bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.attention import merge_pieces
from dysink_cli.model.compiling import compiled
from dysink_cli.model.fp8 import linear
from dysink_cli.model.rope import rotate_pairs

Linear = tuple[Tensor, ...]  # (weight, bias), or (weight_fp8, weight_scale, bias): model/fp8.py


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


def attn_in(
    x: Tensor,
    shift: Tensor,
    scale: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    norms: tuple[Tensor, Tensor],
    cos: Tensor,
    sin: Tensor,
    frames: int,
    eps: float,
    qk_eps: float,
    heads: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Self-attention inputs: (q, k, k_raw, v), each (B, L, H, D); q and k roped, k_raw not."""
    h = norm_modulate(x, shift, scale, frames, eps)
    q_heads = rms_norm(linear(h, q), norms[0], qk_eps).unflatten(-1, (heads, -1))
    k_raw = rms_norm(linear(h, k), norms[1], qk_eps).unflatten(-1, (heads, -1))
    values = linear(h, v).unflatten(-1, (heads, -1))
    return rotate_pairs(q_heads, cos, sin), rotate_pairs(k_raw, cos, sin), k_raw, values


def attn_out(
    x: Tensor,
    attn: Tensor,
    o: Linear,
    gate: Tensor,
    cross_norm: Linear | None,
    cross_q: Linear,
    cross_q_norm: Tensor,
    frames: int,
    eps: float,
    qk_eps: float,
    heads: int,
) -> tuple[Tensor, Tensor]:
    """Self-attention output (B, L, H, D) into the residual; returns (x, cross-attention query)."""
    x = gated_residual(x, linear(attn.flatten(2), o), gate, frames)
    h = x if cross_norm is None else F.layer_norm(x, (x.shape[-1],), *cross_norm, eps=eps)
    return x, rms_norm(linear(h, cross_q), cross_q_norm, qk_eps).unflatten(-1, (heads, -1))


def ffn_out(
    x: Tensor,
    cross: Tensor,
    o: Linear,
    shift: Tensor,
    scale: Tensor,
    gate: Tensor,
    fc1: Linear,
    fc2: Linear,
    frames: int,
    eps: float,
) -> Tensor:
    """Cross-attention output (B, L, H, D) into the residual, then the modulated FFN."""
    x = x + linear(cross.flatten(2), o)
    h = F.gelu(linear(norm_modulate(x, shift, scale, frames, eps), fc1), approximate="tanh")
    return gated_residual(x, linear(h, fc2), gate, frames)


@dataclass(frozen=True)
class BlockOps:
    """The three functions a block calls around its two attentions, and the gated-memory merge."""

    attn_in: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]]
    attn_out: Callable[..., tuple[Tensor, Tensor]]
    ffn_out: Callable[..., Tensor]
    merge: Callable[..., Tensor]


EAGER = BlockOps(attn_in, attn_out, ffn_out, merge_pieces)


def compiled_ops() -> BlockOps:
    """torch.compile'd stages (CUDA, bf16/fp16). Recompiles per distinct chunk length (few)."""
    return BlockOps(*(compiled(fn, dynamic=False) for fn in (attn_in, attn_out, ffn_out, merge_pieces)))
