"""Noise sources: the only randomness of a render. Seeded per (seed, block, step) for real renders,
so a resumed render draws exactly what an uninterrupted one would; fed from tensors for fixtures.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def mix_seed(*parts: int) -> int:
    """SplitMix64 over the parts: decorrelated 63-bit seeds for (seed, block, step)."""
    z = 0x9E3779B97F4A7C15
    for part in parts:
        z = (z ^ (part & _MASK64)) & _MASK64
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        z ^= z >> 31
    return z & ((1 << 63) - 1)


class NoiseSource(Protocol):
    """initial(block) is a block's starting noise; step(block, s) re-noises after step s.

    Shapes are the pipeline layout (B, F, C, H, W).
    """

    def initial(self, block: int, shape: tuple[int, ...]) -> Tensor: ...

    def step(self, block: int, step: int, shape: tuple[int, ...]) -> Tensor: ...


class SeededNoise:
    """N(0, 1) drawn on the CPU from a generator seeded by mix_seed(seed, block, step)."""

    INITIAL_STEP = -1

    def __init__(self, seed: int, tiled: bool = False) -> None:
        self.seed = seed
        self.tiled = tiled  # Rolling Sink's CLI: every block starts from block 0's noise

    def _draw(self, block: int, step: int, shape: tuple[int, ...]) -> Tensor:
        gen = torch.Generator().manual_seed(mix_seed(self.seed, block, step))
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    def initial(self, block: int, shape: tuple[int, ...]) -> Tensor:
        return self._draw(0 if self.tiled else block, self.INITIAL_STEP, shape)

    def step(self, block: int, step: int, shape: tuple[int, ...]) -> Tensor:
        return self._draw(block, step, shape)


class TensorNoise:
    """Pre-drawn noise (parity fixtures). initial: (B, T, C, H, W); steps: (blocks, steps, B, F, C, H, W)."""

    def __init__(self, initial: Tensor, steps: Tensor, frames_per_block: int) -> None:
        self.initial_noise, self.step_noise, self.frames_per_block = initial, steps, frames_per_block

    def initial(self, block: int, shape: tuple[int, ...]) -> Tensor:
        f0 = block * self.frames_per_block
        out = self.initial_noise[:, f0 : f0 + self.frames_per_block]
        assert tuple(out.shape) == tuple(shape), (out.shape, shape)
        return out

    def step(self, block: int, step: int, shape: tuple[int, ...]) -> Tensor:
        out = self.step_noise[block, step].reshape(shape)
        return out
