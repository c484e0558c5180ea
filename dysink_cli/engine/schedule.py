"""Flow-matching timesteps of the few-step causal generators (Self-Forcing FlowMatchScheduler)."""

from __future__ import annotations

import torch
from torch import Tensor

NUM_TRAIN_TIMESTEPS = 1000


def training_sigmas(shift: float, num_train: int = NUM_TRAIN_TIMESTEPS) -> Tensor:
    """sigma_k = shift*s / (1 + (shift-1)*s), s = linspace(1, 0, num_train+1)[:-1], float32."""
    s = torch.linspace(1.0, 0.0, num_train + 1, dtype=torch.float32)[:-1]
    return shift * s / (1 + (shift - 1) * s)


def denoising_timesteps(steps: tuple[int, ...], shift: float, warp: bool = True) -> Tensor:
    """The sampler's timesteps (float32). warp: index [t_0..t_999, 0] at num_train - step.

    [1000, 750, 500, 250] with shift 5 -> [1000, 937.5, 833.3333, 625].
    """
    if not warp:
        return torch.tensor(steps, dtype=torch.float32)
    table = torch.cat([training_sigmas(shift) * NUM_TRAIN_TIMESTEPS, torch.zeros(1)])
    return table[NUM_TRAIN_TIMESTEPS - torch.tensor(steps, dtype=torch.long)]


def sigma_of(timestep: Tensor | float, shift: float) -> Tensor:
    """sigma of the nearest training timestep (the reference's argmin lookup), float32 0-dim."""
    sigmas = training_sigmas(shift)
    idx = torch.argmin((sigmas * NUM_TRAIN_TIMESTEPS - torch.as_tensor(timestep, dtype=torch.float32)).abs())
    return sigmas[idx]
