"""umT5-XXL encoder (Wan2.1 `wan/modules/t5.py`) with the keys of `models_t5_umt5-xxl-enc-bf16.pth`.

`UMT5Encoder.forward(ids, mask)` is the raw output `[B, L, dim]`; `encode(ids, mask)` also
zeroes the rows at and after each prompt's length, as the pipeline's text-encoder wrapper does.
Keeps no state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dysink_cli.errors import ConfigError
from dysink_cli.model.config import T5Config

T5_MAX_DISTANCE = 128
T5_EPS = 1e-6


def relative_position_bucket(rel: Tensor, num_buckets: int, max_distance: int) -> Tensor:
    """Bidirectional T5 bucket of `rel = key_pos - query_pos` (Wan `T5RelativeEmbedding`).

    Half the buckets per direction (offset `num_buckets // 2` when rel > 0); exact below half of
    that, logarithmic up to `max_distance`, then saturated. Float32 ops in the reference order.
    """
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    n = rel.abs()
    max_exact = half // 2
    scaled = torch.log(n.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (scaled * (half - max_exact)).long()).clamp(max=half - 1)
    return buckets + torch.where(n < max_exact, n, large)


def t5_rms_norm(x: Tensor, weight: Tensor, eps: float = T5_EPS) -> Tensor:
    """T5LayerNorm: `w * x * rsqrt(mean(x^2) + eps)`, stats in fp32, no centering, no bias."""
    x = x * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + eps)
    if weight.dtype in (torch.float16, torch.bfloat16):
        x = x.type_as(weight)
    return weight * x


class T5LayerNorm(nn.Module):
    """RMS norm with a learned scale only (key `weight`)."""

    def __init__(self, dim: int, eps: float = T5_EPS) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return t5_rms_norm(x, self.weight, self.eps)


class T5RelativeEmbedding(nn.Module):
    """Per-layer bias table `[num_buckets, heads]` (key `embedding.weight`)."""

    def __init__(self, num_buckets: int, num_heads: int, max_distance: int = T5_MAX_DISTANCE) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def forward(self, length_q: int, length_k: int) -> Tensor:
        """Bias `[1, heads, Lq, Lk]`."""
        device = self.embedding.weight.device
        rel = torch.arange(length_k, device=device)[None, :] - torch.arange(length_q, device=device)[:, None]
        buckets = relative_position_bucket(rel, self.num_buckets, self.max_distance)  # (Lq, Lk)
        return self.embedding(buckets).permute(2, 0, 1).unsqueeze(0).contiguous()  # (1, H, Lq, Lk)


class T5Attention(nn.Module):
    """T5 self-attention: no 1/sqrt(d) scale, additive position bias, masked keys get dtype-min."""

    def __init__(self, dim: int, dim_attn: int, num_heads: int) -> None:
        super().__init__()
        if dim_attn % num_heads:
            raise ConfigError(
                f"T5 dim_attn {dim_attn} must be divisible by num_heads {num_heads}",
                "pick a head count that divides the attention width",
            )
        self.num_heads = num_heads
        self.head_dim = dim_attn // num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: Tensor, mask: Tensor, pos_bias: Tensor) -> Tensor:
        """x `[B, L, dim]`, mask `[B, L]` (0 = padded key), pos_bias `[1, H, L, L]`."""
        b, length, _ = x.shape
        q = self.q(x).view(b, length, self.num_heads, self.head_dim)  # (B, L, H, D)
        k = self.k(x).view(b, length, self.num_heads, self.head_dim)
        v = self.v(x).view(b, length, self.num_heads, self.head_dim)
        bias = x.new_zeros(b, self.num_heads, length, length) + pos_bias  # (B, H, L, L)
        bias = bias.masked_fill(mask.view(b, 1, 1, length) == 0, torch.finfo(x.dtype).min)
        logits = torch.einsum("binc,bjnc->bnij", q, k) + bias
        attn = F.softmax(logits.float(), dim=-1).type_as(logits)
        out = torch.einsum("bnij,bjnc->binc", attn, v).reshape(b, length, -1)  # (B, L, dim_attn)
        return self.o(out)


class T5FeedForward(nn.Module):
    """Gated GELU-tanh FFN: `fc2(fc1(x) * gelu_tanh(gate(x)))`, no biases."""

    def __init__(self, dim: int, dim_ffn: int) -> None:
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class T5Block(nn.Module):
    """Pre-norm block: `x += attn(norm1(x))`, `x += ffn(norm2(x))` (Wan `T5SelfAttention`)."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.norm1 = T5LayerNorm(config.dim)
        self.attn = T5Attention(config.dim, config.dim_attn, config.num_heads)
        self.norm2 = T5LayerNorm(config.dim)
        self.ffn = T5FeedForward(config.dim, config.dim_ffn)
        self.pos_embedding = (
            None if config.shared_pos else T5RelativeEmbedding(config.num_buckets, config.num_heads)
        )

    def forward(self, x: Tensor, mask: Tensor, pos_bias: Tensor | None = None) -> Tensor:
        if self.pos_embedding is not None:
            pos_bias = self.pos_embedding(x.size(1), x.size(1))
        assert pos_bias is not None, "shared_pos encoder must pass the shared bias"
        x = x + self.attn(self.norm1(x), mask, pos_bias)
        return x + self.ffn(self.norm2(x))


class UMT5Encoder(nn.Module):
    """umT5 encoder (Wan `T5Encoder`, `umt5_xxl(encoder_only=True)`); 242 tensors at full size."""

    def __init__(self, config: T5Config) -> None:
        super().__init__()
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.dim)
        self.pos_embedding = (
            T5RelativeEmbedding(config.num_buckets, config.num_heads) if config.shared_pos else None
        )
        self.blocks = nn.ModuleList(T5Block(config) for _ in range(config.num_layers))
        self.norm = T5LayerNorm(config.dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids, mask `[B, L]` int64 -> raw hidden states `[B, L, dim]` (padded rows too)."""
        x = self.token_embedding(ids)  # (B, L, dim)
        length = ids.size(1)
        shared = self.pos_embedding(length, length) if self.pos_embedding is not None else None
        for block in self.blocks:
            x = block(x, mask, shared)
        return self.norm(x)

    def encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """`forward`, rows `>= mask.sum()` set to 0 (SF `WanTextEncoder`) -> `[B, L, dim]`."""
        return zero_padded_rows(self.forward(ids, mask), mask)


def zero_padded_rows(hidden: Tensor, mask: Tensor) -> Tensor:
    """Zero `hidden[b, i]` for `i >= mask[b].sum()`; hidden `[B, L, C]`, mask `[B, L]`."""
    seq_lens = mask.gt(0).sum(dim=1)  # (B,)
    keep = torch.arange(hidden.size(1), device=hidden.device)[None, :] < seq_lens[:, None]  # (B, L)
    return hidden.masked_fill(~keep.unsqueeze(-1), 0.0)
