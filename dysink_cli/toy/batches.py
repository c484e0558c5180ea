"""DiT training batches: drawn for a stage (layout, rendered views, VAE latents) and reused.

A drawn batch is kept for `Profile.dit_reuse` steps (fresh noise each); `rng_state` is where it
came from, so a resumed run draws it again bit-exactly (trainer.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dysink_cli.model.vae import WanVAE
from dysink_cli.toy import checkpoint as ckpt
from dysink_cli.toy.data import (
    PREROLL_LATENTS,
    STAGE_MIX,
    TEACHER_MIX,
    DiTBatch,
    Layout,
    dit_batch,
    stage_layout,
)


@torch.no_grad()
def batch_latents(vae: WanVAE, batch: DiTBatch) -> tuple[Tensor, Tensor | None]:
    """Normalised latents: chain (B, 3n, C, h, w) and far blocks (B, k, 3, C, h, w) or None."""
    chain = vae.encode(batch.chain_video)
    if not batch.layout.from_start:
        chain = chain[:, PREROLL_LATENTS:]
    if batch.far_video is None:
        return chain, None
    far = vae.encode(batch.far_video)
    if batch.layout.far != "sink":
        far = far[:, PREROLL_LATENTS:]
    return chain, far.unflatten(0, (chain.shape[0], batch.layout.far_blocks))


@dataclass
class DrawnBatch:
    """A rendered and encoded DiT batch, kept for `dit_reuse` steps (rng_state: where it came from)."""

    rng_state: Any
    stage: str
    layout: Layout
    chain: Tensor
    far: Tensor | None
    chain_starts: Tensor
    far_starts: Tensor
    captions: list[str]
    uses: int = 0
    seconds: float = 0.0  # to render and encode (logged as draw_s)


def batch_kind(stage: str) -> str:
    """Which stages may reuse each other's DrawnBatch: "dit", "sf" and "dmd" do; "text", "camera",
    "pan" and "clip" draw their own."""
    return stage if stage in ("text", "camera", "pan", "clip") else "dit"


def draw_batch(
    rng: random.Random, stage: str, vae: WanVAE, size: tuple[int, int], device: torch.device,
    frame_size: tuple[int, int],
) -> DrawnBatch:  # fmt: skip
    """A fresh batch of `size` (worlds, samples per world) for `stage`: its layout (data.stage_layout)
    and motion mix (data.STAGE_MIX), rendered, then encoded by the frozen `vae` (autocast by the caller)."""
    rng_state, mix = ckpt.python_rng_state(rng), STAGE_MIX.get(stage, TEACHER_MIX)
    layout = stage_layout(rng, stage, mix)
    batch = dit_batch(rng, layout, *size, device, frame_size, mix)
    chain, far = batch_latents(vae, batch)
    blocks = chain.float().unflatten(1, (layout.chain_blocks, -1))
    far = None if far is None else far.float()
    starts = (batch.chain_starts(), batch.far_starts())
    return DrawnBatch(rng_state, stage, layout, blocks, far, *starts, batch.captions)
