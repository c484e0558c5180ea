"""The Wan VAE's elementwise chains between its convolutions, as pure functions (one torch.compile
of each serves every layer), and the set a residual block runs (`Chains`).

cuDNN leaves a convolution's bias to a separate pass: PyTorch adds it after the kernel, rounded to
the output dtype. With `fold_biases` a residual block runs its two convolutions without the bias
and adds it inside the pass that follows anyway (the second norm chain for the first convolution,
the residual sum for the second), rounded where the separate add rounds: the same frames, two
passes over the activation fewer per block.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.compiling import compiled


def rms_norm(x: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """Wan RMS_norm over channels (dim 1): x / max(||x||_2, 1e-12) * scale * gamma."""
    return F.normalize(x, dim=1) * scale * gamma


def rms_norm_silu(x: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """SiLU(RMS_norm(x)): the residual blocks' pre-conv chain."""
    return F.silu(rms_norm(x, gamma, scale))


def rms_norm_silu_after(front: Tensor, x: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """cat([front, SiLU(RMS_norm(x))], time): a cached conv's padded input. Compiled, the chain
    writes straight into the concatenation (no separate copy of the activation)."""
    return torch.cat([front, rms_norm_silu(x, gamma, scale)], dim=2)


def round_to_bf16(x: Tensor) -> Tensor:
    """float32 values rounded to the nearest bfloat16 (ties to even), still float32. Done on the
    bits: torch.compile keeps it, where it drops an explicit `.to(bfloat16).float()` inside a fused
    kernel (measured on the CPU backend: sums off by a bf16 step)."""
    bits = x.view(torch.int32)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & -0x10000
    return bits.view(torch.float32)


FOLDABLE = (torch.bfloat16, torch.float32)  # activation dtypes with_bias rounds exactly


def with_bias(x: Tensor, bias: Tensor) -> Tensor:
    """x + bias per channel (dim 1), computed in float32 and rounded to x's dtype, as PyTorch's
    separate bias add after a cuDNN convolution rounds it (also inside a compiled chain)."""
    total = x.float() + bias.float().reshape(-1, *(1,) * (x.dim() - 2))
    if x.dtype == torch.bfloat16:
        total = round_to_bf16(total)  # now exactly representable: the cast below cannot differ
    elif x.dtype not in FOLDABLE:
        raise ValueError(f"folded conv biases support {FOLDABLE} activations, not {x.dtype}")
    return total.to(x.dtype)


def rms_norm_silu_after_biased(front: Tensor, x: Tensor, bias: Tensor, gamma: Tensor, scale: float) -> Tensor:
    """`rms_norm_silu_after` of x plus the bias its convolution left out."""
    return torch.cat([front, rms_norm_silu(with_bias(x, bias), gamma, scale)], dim=2)


def residual_sum(x: Tensor, bias: Tensor, shortcut: Tensor) -> Tensor:
    """(x + bias) + shortcut, each sum rounded to x's dtype as the two separate adds round."""
    return (with_bias(x, bias).float() + shortcut.float()).to(x.dtype)


@dataclass(frozen=True)
class Chains:
    """The chains a residual block (and the head) calls; `fold_biases` as the module docstring says."""

    norm_silu: Callable[[Tensor, Tensor, float], Tensor]
    norm_silu_after: Callable[[Tensor, Tensor, Tensor, float], Tensor]
    norm_silu_after_biased: Callable[[Tensor, Tensor, Tensor, Tensor, float], Tensor]
    residual_sum: Callable[[Tensor, Tensor, Tensor], Tensor]
    fold_biases: bool = False


EAGER = Chains(rms_norm_silu, rms_norm_silu_after, rms_norm_silu_after_biased, residual_sum)


def compiled_chains(fold_biases: bool = False) -> Chains:
    """The chains under torch.compile (CUDA), the biases folded into them when asked."""
    fns = (rms_norm_silu, rms_norm_silu_after, rms_norm_silu_after_biased, residual_sum)
    return Chains(*(compiled(fn, dynamic=True) for fn in fns), fold_biases=fold_biases)
