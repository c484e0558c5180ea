"""The floor of a block: FLOPs of its DiT forwards, and the time they take at measured rates.

`forward_flops`, `block_keys` and `floor_ms` are pure arithmetic (2 FLOPs per multiply-add);
`measure_rates` times one GEMM and one attention call at the DiT's shapes on the GPU. Imports
config and model (torch only inside `measure_rates`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from dysink_cli.config import RenderConfig
from dysink_cli.model.config import DiTConfig


@dataclass(frozen=True)
class ForwardFlops:
    """FLOPs of DiT work: the linears and the attention (self + cross) at their own rates."""

    linear: float
    attention: float

    def __add__(self, other: ForwardFlops) -> ForwardFlops:
        return ForwardFlops(self.linear + other.linear, self.attention + other.attention)

    @property
    def total(self) -> float:
        return self.linear + self.attention


@dataclass(frozen=True)
class Rates:
    """Measured throughput in TFLOP/s: a GEMM and an attention call at the DiT's shapes."""

    matmul_tflops: float
    attention_tflops: float


def tokens_per_frame(dit: DiTConfig, spatial_stride: int, width: int, height: int) -> int:
    """DiT tokens of one latent frame: (H / stride / patch_h) x (W / stride / patch_w) (1560 at 832x480)."""
    _, patch_h, patch_w = dit.patch_size
    return (height // spatial_stride // patch_h) * (width // spatial_stride // patch_w)


def forward_flops(dit: DiTConfig, tokens_per_frame: int, keys_frames: int, frames: int = 3) -> ForwardFlops:
    """One DiT forward over `frames` latent frames attending to `keys_frames` frames of keys.

    Per layer and query token: self-attention q, k, v, o (4 dim^2), cross-attention q and o (2 dim^2;
    the text's k, v are computed once per prompt), the FFN (2 dim ffn); attention scores and
    values 2 x 2 dim per key (self: the cached frames, cross: the text tokens).
    """
    tokens = frames * tokens_per_frame
    per_token = 2 * (4 * dit.dim**2 + 2 * dit.dim**2 + 2 * dit.dim * dit.ffn_dim) * dit.num_layers
    attn = 4 * tokens * keys_frames * tokens_per_frame * dit.dim * dit.num_layers
    cross = 4 * tokens * dit.text_len * dit.dim * dit.num_layers
    return ForwardFlops(linear=float(per_token * tokens), attention=float(attn + cross))


def block_keys(cfg: RenderConfig) -> list[int]:
    """Frames of keys of each DiT forward in a steady-state block: one per denoising step (the
    window plus DySink's retrieved blocks), then the clean pass (the window: it never sees memory)."""
    window = cfg.engine.window_frames
    retrieved = cfg.dysink.top_k * cfg.engine.frames_per_block if cfg.engine.policy == "dysink" else 0
    return [window + retrieved] * len(cfg.sampler.steps) + [window]


def block_flops(cfg: RenderConfig, dit: DiTConfig, spatial_stride: int) -> ForwardFlops:
    """FLOPs of every DiT forward of a steady-state block at the config's resolution."""
    per_frame = tokens_per_frame(dit, spatial_stride, cfg.output.width, cfg.output.height)
    fpb = cfg.engine.frames_per_block
    total = ForwardFlops(0.0, 0.0)
    for keys in block_keys(cfg):
        total = total + forward_flops(dit, per_frame, keys, fpb)
    return total


def floor_ms(flops: ForwardFlops, rates: Rates) -> float:
    """Milliseconds the work takes at the rates (linears at the GEMM rate, attention at its own)."""
    return flops.linear / rates.matmul_tflops / 1e9 + flops.attention / rates.attention_tflops / 1e9


def measure_rates(
    dit: DiTConfig,
    tokens: int,
    keys: int,
    dtype_name: str = "bfloat16",
    backend: str = "cudnn",
    reps: int = 20,
) -> Rates:
    """Median TFLOP/s on the current CUDA device of (tokens x dim) @ (dim x ffn_dim) and of one
    attention call (tokens queries, keys keys, the DiT's heads) through the render's backend."""
    import torch

    from dysink_cli.model.attention import attention

    dtype = getattr(torch, dtype_name)
    a = torch.randn(tokens, dit.dim, device="cuda", dtype=dtype)
    b = torch.randn(dit.dim, dit.ffn_dim, device="cuda", dtype=dtype)
    q = torch.randn(1, tokens, dit.num_heads, dit.head_dim, device="cuda", dtype=dtype)
    k = torch.randn(1, keys, dit.num_heads, dit.head_dim, device="cuda", dtype=dtype)

    def median_ms(fn: object) -> float:
        times = []
        for i in range(reps + 3):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()  # type: ignore[operator]
            end.record()
            end.synchronize()
            if i >= 3:
                times.append(start.elapsed_time(end))
        return statistics.median(times)

    gemm_ms = median_ms(lambda: a @ b)
    attn_ms = median_ms(lambda: attention(q, k, k, backend))
    gemm_flops = 2 * tokens * dit.dim * dit.ffn_dim
    attn_flops = 4 * tokens * keys * dit.dim
    return Rates(gemm_flops / gemm_ms / 1e9, attn_flops / attn_ms / 1e9)
