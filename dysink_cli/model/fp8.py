"""FP8 linears of the DiT blocks (`model.fp8 = true`): e4m3 weights with one scale per output row,
activations quantised per token on the fly, products by `torch._scaled_mm` (CUDA, row-wise scales).

The embeddings, the time projections and the head stay in the compute dtype, as do the text K/V
(computed once per prompt). On the CPU the same quantised numbers are multiplied in float32, so
tests check the arithmetic without a GPU. Keeps no state beyond the quantised weights, which
`use_fp8(dit, on)` attaches to (and removes from) each converted `nn.Linear` as `fp8_weights`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0  # largest finite e4m3fn value
MIN_SCALE = 1e-12  # an all-zero row keeps a finite scale


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """(M, K) -> e4m3 (M, K) and float32 scales (M,), with x ~ q * scale row by row."""
    scale = (x.float().abs().amax(dim=1) / FP8_MAX).clamp_min(MIN_SCALE)
    q = (x.float() / scale[:, None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


def fp8_linear(x: Tensor, weight: Tensor, weight_scale: Tensor, bias: Tensor | None) -> Tensor:
    """y = x W^T + b with x quantised per token and W (N, K, e4m3) per output row; y in x's dtype."""
    rows = x.reshape(-1, x.shape[-1])
    xq, x_scale = quantize_rows(rows)
    if rows.is_cuda:
        y = torch._scaled_mm(
            xq, weight.t(), scale_a=x_scale[:, None], scale_b=weight_scale[None, :], out_dtype=x.dtype
        )
    else:  # the same products in float32: the reference the CUDA kernel is checked against
        y = ((xq.float() * x_scale[:, None]) @ (weight.float() * weight_scale[:, None]).t()).to(x.dtype)
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], y.shape[-1])


def linear(x: Tensor, params: tuple[Tensor, ...]) -> Tensor:
    """F.linear for (weight, bias); fp8_linear for (weight_fp8, weight_scale, bias) (model/dit.py)."""
    if len(params) == 3:
        return fp8_linear(x, *params)
    return F.linear(x, *params)


def block_linears(block: nn.Module) -> list[nn.Linear]:
    """The linears FP8 applies to in one DiT block: self- and cross-attention q, k, v, o; the FFN."""
    found = [getattr(attn, n) for attn in (block.self_attn, block.cross_attn) for n in "qkvo"]
    return found + [m for m in block.ffn if isinstance(m, nn.Linear)]


def use_fp8(blocks: nn.ModuleList, on: bool = True) -> int:
    """Attach (on) or drop the e4m3 copies of every block linear's weight; returns how many.

    The compute-dtype weights stay (the text K/V and a later use_fp8(off) need them)."""
    count = 0
    for block in blocks:
        for lin in block_linears(block):
            if on and getattr(lin, "fp8_weights", None) is None:
                with torch.no_grad():
                    lin.fp8_weights = quantize_rows(lin.weight.detach())
            elif not on:
                lin.fp8_weights = None
            count += 1
    return count


def linear_params(module: nn.Module) -> tuple[Tensor, ...]:
    """What `linear` takes for `module`: its e4m3 weights and scales when FP8 is on."""
    fp8 = module.__dict__.get("fp8_weights")  # a plain attribute: no nn.Module.__getattr__ miss per call
    if fp8 is not None:
        return (*fp8, module.bias)
    return module.weight, module.bias
