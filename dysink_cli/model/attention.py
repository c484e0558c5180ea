"""One attention entry point with an explicit backend: torch SDPA (default) or flash-attn.

All DiT attention is full (unmasked) softmax attention; layouts are (B, L, H, D).
"""

from __future__ import annotations

import importlib.util
import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from dysink_cli.errors import ConfigError

BACKENDS = ("sdpa", "cudnn", "flash")
CUDNN_FIRST = [
    SDPBackend.CUDNN_ATTENTION,
    SDPBackend.FLASH_ATTENTION,
    SDPBackend.EFFICIENT_ATTENTION,
    SDPBackend.MATH,
]


def flash_available() -> bool:
    """flash-attn importable (the optional `flash` extra)."""
    return importlib.util.find_spec("flash_attn") is not None


def resolve_backend(name: str, device: torch.device) -> str:
    """'auto' -> cuDNN SDPA on CUDA (fastest measured on H100: bench/RESULTS.md), else torch's SDPA.

    'sdpa' lets torch pick its kernel; 'cudnn' forces torch's cuDNN kernel; 'flash' is the
    flash-attn package (the `flash` extra).
    """
    if name == "auto":
        return "cudnn" if device.type == "cuda" and torch.backends.cudnn.is_available() else "sdpa"
    if name not in BACKENDS:
        raise ConfigError(f"model.attention = {name!r} is not one of auto, sdpa, cudnn, flash", "use auto")
    if name == "flash" and not flash_available():
        raise ConfigError(
            "model.attention = 'flash' but flash-attn is not installed",
            "pip install 'dysink[flash]' or use --set model.attention=sdpa",
        )
    return name


def attention(q: Tensor, k: Tensor, v: Tensor, backend: str = "sdpa") -> Tensor:
    """softmax(q k^T / sqrt(D)) v per head. q (B, Lq, H, D); k, v (B, Lk, H, D) -> (B, Lq, H, D)."""
    if backend == "flash" and q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        from flash_attn import flash_attn_func

        out = flash_attn_func(q, k, v)
        return out[0] if isinstance(out, tuple) else out
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if backend == "cudnn" and q.is_cuda:
        with sdpa_kernel(CUDNN_FIRST, set_priority=True):
            return F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)
    return F.scaled_dot_product_attention(qt, kt, vt).transpose(1, 2)


def attention_lse(q: Tensor, k: Tensor, v: Tensor, backend: str = "sdpa") -> tuple[Tensor, Tensor]:
    """attention() plus the log-sum-exp of each query's scaled scores: (B, Lq, H, D), (B, H, Lq)
    (fp32, or fp64 for fp64 inputs).

    CUDA half precision uses torch's cuDNN kernel (flash-attn with backend="flash"); elsewhere the
    scores are formed explicitly (small shapes: tests and the CPU demo).
    """
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if backend == "flash":
            from flash_attn import flash_attn_func

            out, lse, _ = flash_attn_func(q, k, v, return_attn_probs=True)
            return out, lse.float()
        out, lse = torch.ops.aten._scaled_dot_product_cudnn_attention(qt, kt, vt, None, True)[:2]
        return out.transpose(1, 2), lse.reshape(qt.shape[:3]).float()
    acc = torch.promote_types(q.dtype, torch.float32)
    scores = (qt.to(acc) @ kt.to(acc).transpose(-1, -2)) / math.sqrt(q.shape[-1])
    lse = torch.logsumexp(scores, dim=-1)
    out = (torch.exp(scores - lse.unsqueeze(-1)) @ vt.to(acc)).to(q.dtype)
    return out.transpose(1, 2), lse


def merge_pieces(outs: list[Tensor], lses: list[Tensor], keep: Tensor) -> Tensor:
    """Softmax attention over the union of the kept pieces' keys, from each piece's own attention.

    outs[i] (B, L, H, D) and lses[i] (B, H, L) are attention() / log-sum-exp over piece i's keys;
    keep (P,) bool selects pieces (at least one kept). No host sync: dropped pieces weigh zero.
    """
    lse = torch.stack(lses)  # (P, B, H, L)
    kept = keep.view(-1, 1, 1, 1)
    lse = torch.where(kept, lse, torch.full_like(lse, -torch.inf))
    weights = torch.exp(lse - lse.amax(dim=0, keepdim=True))  # dropped pieces: exp(-inf) = 0
    weights = (weights / weights.sum(dim=0, keepdim=True)).transpose(2, 3).unsqueeze(-1)  # (P, B, L, H, 1)
    acc = torch.promote_types(outs[0].dtype, torch.float32)
    return (torch.stack(outs).to(acc) * weights.to(acc)).sum(dim=0).to(outs[0].dtype)
