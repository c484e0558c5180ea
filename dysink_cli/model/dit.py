"""Wan2.1 DiT (WanModel / CausalWanModel weights, 825 keys at 1.3B): one denoiser call, no cache.

The caller passes per-frame timesteps, the text's cross-attention K/V, a RoPE table for the new
tokens and an `AttnContext` (the window cache to write/read, retrieved memory K/V, gate rule).
Bidirectional use is the same call with no cache: every token attends to every other one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dysink_cli.model.attention import attention, attention_lse
from dysink_cli.model.block_ops import EAGER, BlockOps, compiled_ops
from dysink_cli.model.config import DiTConfig
from dysink_cli.model.fp8 import linear_params
from dysink_cli.model.gate import entry_ratios, gate_keep, head_affinity
from dysink_cli.model.rope import Rope, RopeTable, layer_table


class LayerCache(Protocol):
    """The window cache as one forward sees it (owned by the engine's KVCache)."""

    def attend_kv(self, layer: int, k: Tensor, v: Tensor, k_raw: Tensor) -> tuple[Tensor, Tensor, int]:
        """Store this call's roped k, v (and un-roped k_raw); return (K, V, sink_tokens) to attend."""
        ...


@dataclass
class AttnContext:
    """Self-attention inputs of one call. memory[layer] = retrieved entries' (k, v), frame order."""

    cache: LayerCache | None = None
    memory: list[list[tuple[Tensor, Tensor]]] | None = None
    gate_rule: str = "off"
    gate_threshold: float = 0.0
    gate_ratios: list[Tensor] = field(default_factory=list)  # filled: per layer (E,) rho
    gate_keeps: list[Tensor] = field(default_factory=list)  # filled: per layer (E,) bool
    sink_gate: bool = False  # DySink with a static sink: gate the whole sink too (every call)
    sink_dropped: list[bool] = field(default_factory=list)  # filled: per layer
    sync_free: bool = False  # gate without host syncs (CUDA graphs): merge pieces by log-sum-exp


def sinusoidal_embedding(dim: int, position: Tensor) -> Tensor:
    """Wan `sinusoidal_embedding_1d`: [cos(p w_k), sin(p w_k)], w_k = 10000^(-k/half), float64."""
    half = dim // 2
    position = position.to(torch.float64)
    freqs = torch.pow(10000, -torch.arange(half, dtype=torch.float64, device=position.device).div(half))
    sinusoid = torch.outer(position, freqs)
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) in fp32, cast back, times weight (Wan `WanRMSNorm`)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x) * self.weight


class LayerNorm(nn.LayerNorm):
    """Wan `WanLayerNorm` as the distilled checkpoints ran it: on the activation dtype (torch
    accumulates in fp32 internally), i.e. bf16 in, bf16 out; fp32 runs are unchanged."""


class Attention(nn.Module):
    """q/k/v/o projections with q/k RMSNorm over all channels (keys `q,k,v,o,norm_q,norm_k`)."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.num_heads, self.head_dim = cfg.num_heads, cfg.head_dim
        self.q, self.k, self.v, self.o = (nn.Linear(cfg.dim, cfg.dim) for _ in range(4))
        self.norm_q = RMSNorm(cfg.dim, cfg.eps)  # qk_norm = false is refused by DiTConfig
        self.norm_k = RMSNorm(cfg.dim, cfg.eps)

    def heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.num_heads, self.head_dim))  # (B, L, H, D)

    def text_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention K/V of the (embedded) text, computed once per prompt."""
        return self.heads(self.norm_k(self.k(context))), self.heads(self.v(context))


class Block(nn.Module):
    """Wan attention block: modulated self-attn, un-gated cross-attn, modulated FFN."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.self_attn = Attention(cfg)
        self.norm3 = (
            LayerNorm(cfg.dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        )
        self.cross_attn = Attention(cfg)
        self.norm2 = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(
            nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, cfg.dim)
        )
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)
        self.ops: BlockOps = EAGER  # compiled_ops() on CUDA (WanDiT.use_compiled_ops)

    def forward(
        self,
        x: Tensor,
        e0: Tensor,
        text_kv: tuple[Tensor, Tensor],
        rope: RopeTable,
        ctx: AttnContext,
        layer: int,
        backend: str,
    ) -> Tensor:
        """x (B, L, C); e0 (B, F, 6, C) per-frame modulation inputs."""
        frames, eps, ops = e0.shape[1], self.norm1.eps, self.ops
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation.unsqueeze(1) + e0).chunk(6, dim=2)
        sa, ca = self.self_attn, self.cross_attn
        q, k, k_raw, v = ops.attn_in(
            x,
            shift1,
            scale1,
            linear_params(sa.q),
            linear_params(sa.k),
            linear_params(sa.v),
            (sa.norm_q.weight, sa.norm_k.weight),
            *rope.for_dtype(x.dtype),
            frames,
            eps,
            sa.norm_q.eps,
            sa.num_heads,
        )
        attn = self.self_attention(q, k, k_raw, v, ctx, layer, backend)
        cross_norm = (self.norm3.weight, self.norm3.bias) if isinstance(self.norm3, nn.LayerNorm) else None
        x, q = ops.attn_out(
            x,
            attn,
            linear_params(sa.o),
            gate1,
            cross_norm,
            linear_params(ca.q),
            ca.norm_q.weight,
            frames,
            self.norm3.eps if cross_norm else eps,
            ca.norm_q.eps,
            ca.num_heads,
        )
        cross = attention(q, *text_kv, backend=backend)
        return ops.ffn_out(
            x,
            cross,
            linear_params(ca.o),
            shift2,
            scale2,
            gate2,
            linear_params(self.ffn[0]),
            linear_params(self.ffn[2]),
            frames,
            eps,
        )

    def self_attention(
        self, q: Tensor, k: Tensor, k_raw: Tensor, v: Tensor, ctx: AttnContext, layer: int, backend: str
    ) -> Tensor:
        """Attend over the cache window (+ retrieved memory the gate keeps): (B, L, H, D)."""
        if ctx.cache is None:
            keys, values, sink_tokens = k, v, 0
        else:
            keys, values, sink_tokens = ctx.cache.attend_kv(layer, k, v, k_raw)
        local = keys[:, sink_tokens:]  # the gates' baseline: the window without the sink
        if ctx.sink_gate and sink_tokens and local.shape[1]:  # no baseline while the sink is all there is
            keys, values, sink_tokens = self.gate_sink(q, keys, values, sink_tokens, ctx)
        entries = ctx.memory[layer] if ctx.memory else []
        if entries and ctx.gate_rule != "off":
            keep = self.gate(q, local, entries, ctx)
            if ctx.sync_free:  # each piece attended alone, dropped ones weigh zero in the merge
                pieces = [attention_lse(q, k, v, backend) for k, v in [*entries, (keys, values)]]
                outs, lses = zip(*pieces, strict=True)
                return self.ops.merge(list(outs), list(lses), torch.cat([keep, keep.new_ones(1)]))
            # one host sync per layer: measured faster than masking dropped keys (bench/RESULTS.md)
            entries = [entry for entry, kept in zip(entries, keep.tolist(), strict=True) if kept]
        if entries:
            keys = torch.cat([ek for ek, _ in entries] + [keys], dim=1)
            values = torch.cat([ev for _, ev in entries] + [values], dim=1)
        return attention(q, keys, values, backend=backend)

    @staticmethod
    def gate_sink(
        q: Tensor, keys: Tensor, values: Tensor, sink_tokens: int, ctx: AttnContext
    ) -> tuple[Tensor, Tensor, int]:
        """DySink's gate on a static sink: one group against the local window; dropped if rho > tau."""
        q_mean = q.mean(dim=1)
        ratio = entry_ratios(
            head_affinity(q_mean, keys[:, :sink_tokens])[None], head_affinity(q_mean, keys[:, sink_tokens:])
        )
        dropped = bool(ratio[0] > ctx.gate_threshold)
        ctx.sink_dropped.append(dropped)
        if dropped:
            return keys[:, sink_tokens:], values[:, sink_tokens:], 0
        return keys, values, sink_tokens

    @staticmethod
    def gate(q: Tensor, local_keys: Tensor, entries: list[tuple[Tensor, Tensor]], ctx: AttnContext) -> Tensor:
        """DySink sink anomaly gate over retrieved entries (model/gate.py): (E,) keep mask."""
        q_mean = q.mean(dim=1)  # (B, H, D)
        local = head_affinity(q_mean, local_keys)
        per_entry = torch.stack([head_affinity(q_mean, ek) for ek, _ in entries])  # (E, B, H)
        ratios = entry_ratios(per_entry, local)
        keep = gate_keep(ratios, ctx.gate_threshold, ctx.gate_rule)
        ctx.gate_ratios.append(ratios)
        ctx.gate_keeps.append(keep)
        return keep


class Head(nn.Module):
    """Output head: modulated LayerNorm then Linear(dim -> out_dim * prod(patch))."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.norm = LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, cfg.out_dim * math.prod(cfg.patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        """x (B, L, C); e (B, F, C): the pre-projection time embedding (not e0)."""
        shift, scale = (self.modulation.unsqueeze(1) + e.unsqueeze(2)).chunk(2, dim=2)
        h = self.norm(x).unflatten(1, (e.shape[1], -1)) * (1 + scale) + shift
        return self.head(h.flatten(1, 2))


class WanDiT(nn.Module):
    """Wan2.1 T2V DiT. forward() predicts the flow v = noise - x0 for one chunk of frames."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv3d(
            cfg.in_dim, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size
        )
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(
            nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)

    def use_compiled_ops(self) -> None:
        """Fuse the blocks' elementwise chains with torch.compile (CUDA, bf16); same math."""
        ops = compiled_ops()
        for block in self.blocks:
            block.ops = ops

    def encode_text(self, context: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-layer cross-attention K/V. context (B, <=text_len, text_dim), zero-padded to text_len."""
        pad = self.cfg.text_len - context.shape[1]
        if pad > 0:
            context = F.pad(context, (0, 0, 0, pad))
        embedded = self.text_embedding(context.to(self.patch_embedding.weight.dtype))
        return [block.cross_attn.text_kv(embedded) for block in self.blocks]

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        text_kv: list[tuple[Tensor, Tensor]],
        rope: Rope,
        ctx: AttnContext | None = None,
        backend: str = "sdpa",
    ) -> Tensor:
        """x (B, C, F, H, W) latents; t (B, F) timesteps (float32 values). Returns flow (B, C, F, H, W)."""
        ctx = ctx or AttnContext()
        b, _, frames, height, width = x.shape
        dtype = self.patch_embedding.weight.dtype
        tokens = self.patch_embedding(x.to(dtype))  # (B, C, F, h, w)
        grid = tokens.shape[2:]
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, L, C)
        e = self.time_embedding(sinusoidal_embedding(self.cfg.freq_dim, t.flatten()).to(dtype))
        e0 = self.time_projection(e).unflatten(1, (6, self.cfg.dim)).unflatten(0, (b, frames))  # (B, F, 6, C)
        for layer, block in enumerate(self.blocks):
            tokens = block(tokens, e0, text_kv[layer], layer_table(rope, layer), ctx, layer, backend)
        out = self.head(tokens, e.unflatten(0, (b, frames)))  # (B, L, c * prod(patch))
        return self.unpatchify(out, grid)

    def unpatchify(self, out: Tensor, grid: torch.Size) -> Tensor:
        """(B, L, pt*ph*pw*c) -> (B, c, F*pt, h*ph, w*pw); channel fastest inside a patch."""
        pt, ph, pw = self.cfg.patch_size
        f, h, w = grid
        x = out.reshape(out.shape[0], f, h, w, pt, ph, pw, self.cfg.out_dim)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(out.shape[0], self.cfg.out_dim, f * pt, h * ph, w * pw)
