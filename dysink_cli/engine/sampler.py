"""Few-step flow-matching sampler steps (Self-Forcing/DMD): predict x0, re-noise with fresh noise."""

from __future__ import annotations

import torch
from torch import Tensor


def flow_to_x0(x_t: Tensor, flow: Tensor, sigma: Tensor) -> Tensor:
    """x0 = x_t - sigma * v, computed in float64 and cast back (`_convert_flow_pred_to_x0`)."""
    x0 = x_t.to(torch.float64) - sigma.to(torch.float64) * flow.to(torch.float64)
    return x0.to(flow.dtype)


def renoise(x0: Tensor, noise: Tensor, sigma: Tensor) -> Tensor:
    """x_next = (1 - sigma) * x0 + sigma * eps (`FlowMatchScheduler.add_noise`)."""
    sigma = sigma.to(x0.dtype)
    return ((1 - sigma) * x0 + sigma * noise.to(x0.dtype)).to(noise.dtype)
