"""Helpers for tests that drive the BlockGenerator directly (as the render does, without it)."""

from __future__ import annotations

import torch
from torch import Tensor

from dysink_cli.engine.generator import BlockGenerator, BlockOutput


def channel_descriptor(latents: Tensor) -> Tensor:
    """A cheap deterministic stand-in descriptor: the block's channel means, L2-normalised."""
    return torch.nn.functional.normalize(latents.float().mean(dim=(0, 1, 3, 4)), dim=0)


def next_block(gen: BlockGenerator, describe=channel_descriptor) -> BlockOutput:
    """One block, with DySink's store finished from `describe(latents)` as the render would."""
    out = gen.next_block()
    if gen.needs_descriptor:
        gen.finish_block(describe(out.latents))
    return out
