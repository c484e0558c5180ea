"""PE-Core vision tower (lcm_pe `VisionTransformer`: CLS, abs posemb, 2-D RoPE, attention pool).

`PECoreVision(config)(images)` maps `[N, 3, S, S]` images in [-1, 1] to `[N, output_dim]` (not
normalised). State-dict keys are the bare lcm_pe names (163 tensors for S16-384); RoPE has none.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dysink_cli.errors import ConfigError
from dysink_cli.model.config import PECoreConfig

PE_LN_EPS = 1e-5
PE_ROPE_THETA = 10000.0


def rope2d_angles(
    grid_h: int, grid_w: int, head_dim: int, theta: float = PE_ROPE_THETA, cls_token: bool = True
) -> Tensor:
    """lcm_pe `Rope2D` angles `[cls + grid_h * grid_w, head_dim]` in fp32, row-major patches.

    r = head_dim / 4 frequencies theta_p = theta^(-p/r), each repeated for an adjacent pair; the
    first head_dim/2 dims use (col + 1) * theta_p, the last (row + 1) * theta_p; CLS gets 0.
    """
    if head_dim % 4:
        raise ConfigError(f"PE-Core head_dim {head_dim} must be divisible by 4", "fix width/heads")
    rot_dim = head_dim // 2
    freqs = 1.0 / (theta ** (torch.arange(0, rot_dim, 2)[: rot_dim // 2].float() / rot_dim))
    offset = 1 if cls_token else 0
    rows = torch.arange(grid_h, dtype=torch.float32) + offset
    cols = torch.arange(grid_w, dtype=torch.float32) + offset
    ang_y = (rows[:, None] * freqs).repeat_interleave(2, dim=-1)  # (gh, head_dim/2)
    ang_x = (cols[:, None] * freqs).repeat_interleave(2, dim=-1)  # (gw, head_dim/2)
    angles = torch.cat(
        [ang_x[None, :, :].expand(grid_h, -1, -1), ang_y[:, None, :].expand(-1, grid_w, -1)], dim=-1
    ).reshape(grid_h * grid_w, head_dim)  # (gh * gw, head_dim)
    if cls_token:
        angles = torch.cat([angles.new_zeros(1, head_dim), angles], dim=0)
    return angles


def apply_rope2d(x: Tensor, angles: Tensor) -> Tensor:
    """Rotate adjacent pairs `(a, b) -> (a cos - b sin, b cos + a sin)` in fp32; x `[..., T, D]`."""
    xf = x.float()
    pairs = xf.unflatten(-1, (-1, 2))  # (..., T, D/2, 2)
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)  # (..., T, D)
    return (xf * angles.cos() + rotated * angles.sin()).to(x.dtype)


class PackedAttention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's keys (`in_proj_*`, `out_proj`); SDPA."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ConfigError(f"PE-Core width {width} must be divisible by heads {heads}", "fix the config")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.randn(3 * width, width) * width**-0.5)
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: Tensor, context: Tensor, angles: Tensor | None = None) -> Tensor:
        """query `[B, Tq, W]`, context `[B, Tk, W]`; RoPE on q and k when `angles` is given."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        k = F.linear(context, w_k, b_k).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        v = F.linear(context, w_v, b_v).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B,H,T,D)
        if angles is not None:
            q, k = apply_rope2d(q, angles), apply_rope2d(k, angles)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, Tq, D), scale 1/sqrt(D)
        return self.out_proj(out.transpose(1, 2).flatten(2))  # (B, Tq, W)


def _mlp(width: int, hidden: int) -> nn.Sequential:
    """c_fc -> exact GELU -> c_proj (lcm_pe keys `mlp.c_fc`, `mlp.c_proj`)."""
    return nn.Sequential(
        OrderedDict(
            [
                ("c_fc", nn.Linear(width, hidden)),
                ("gelu", nn.GELU()),
                ("c_proj", nn.Linear(hidden, width)),
            ]
        )
    )


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block: `x += attn(ln_1(x))` with 2-D RoPE, `x += mlp(ln_2(x))`; no layer-scale."""

    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=PE_LN_EPS)
        self.attn = PackedAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=PE_LN_EPS)
        self.mlp = _mlp(width, mlp_width)

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, angles)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """The stack of blocks (key prefix `transformer.resblocks.{i}`)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers))

    def forward(self, x: Tensor, angles: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x, angles)
        return x


class AttentionPooling(nn.Module):
    """lcm_pe `AttentionPooling`: a learned probe attends over all tokens; `y += mlp(ln(y))`."""

    def __init__(self, width: int, heads: int, mlp_width: int) -> None:
        super().__init__()
        self.probe = nn.Parameter(torch.randn(1, 1, width))
        self.attn = PackedAttention(width, heads)
        self.layernorm = nn.LayerNorm(width, eps=PE_LN_EPS)
        self.mlp = _mlp(width, mlp_width)

    def forward(self, x: Tensor) -> Tensor:
        """x `[B, T, W]` -> `[B, W]`; the probe is not added back as a residual."""
        probe = self.probe.expand(x.size(0), -1, -1).to(x.dtype)  # (B, 1, W)
        y = self.attn(probe, x)
        y = y + self.mlp(self.layernorm(y))
        return y.squeeze(1)


class PECoreVision(nn.Module):
    """PE-Core vision tower (DS `lcm_pe/core/vision_encoder/pe.py::VisionTransformer`)."""

    def __init__(self, config: PECoreConfig) -> None:
        super().__init__()
        if config.image_size % config.patch_size:
            raise ConfigError(
                f"PE-Core image_size {config.image_size} is not a multiple of the patch {config.patch_size}",
                "fix the config",
            )
        if config.width % config.heads or (config.width // config.heads) % 4:
            raise ConfigError(
                f"PE-Core width {config.width} / heads {config.heads} must give a head_dim "
                "divisible by 4 (2-D RoPE rotates pairs on two axes)",
                "fix the config",
            )
        self.config = config
        width, grid = config.width, config.grid
        mlp_width = int(width * config.mlp_ratio)
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * scale)
        self.positional_embedding = nn.Parameter(torch.randn(1 + grid * grid, width) * scale)
        self.ln_pre = nn.LayerNorm(width, eps=PE_LN_EPS)
        self.transformer = Transformer(width, config.layers, config.heads, mlp_width)
        self.ln_post = nn.LayerNorm(width, eps=PE_LN_EPS)
        self.attn_pool = AttentionPooling(width, config.attn_pooler_heads, mlp_width)
        self.proj = nn.Parameter(torch.randn(width, config.output_dim) * scale)

    def forward(self, images: Tensor) -> Tensor:
        """images `[N, 3, S, S]` in [-1, 1], S = image_size -> features `[N, output_dim]`."""
        size = self.config.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"PE-Core expects [N, 3, {size}, {size}] images, got {tuple(images.shape)}")
        n, grid = images.size(0), self.config.grid
        x = self.conv1(images).flatten(2).transpose(1, 2)  # (N, grid^2, W), row-major patches
        cls = self.class_embedding.view(1, 1, -1).expand(n, -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding  # (N, 1 + grid^2, W)
        angles = rope2d_angles(grid, grid, self.config.width // self.config.heads)
        x = self.transformer(self.ln_pre(x), angles.to(x.device))
        pooled = self.attn_pool(self.ln_post(x))  # (N, W)
        return pooled @ self.proj  # (N, output_dim)
