"""Block descriptors for the DySink memory bank: decoded frames -> PE-Core -> mean -> L2 norm.

`frames_for_descriptor` maps a stand-alone VAE decode in [-1, 1] to [0, 1]; `describe_frames` turns
one block's frames `[N, 3, H, W]` into a unit vector `[output_dim]` (DS `PECoreMemoryEncoder`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.vae import WanVAE


def frames_for_descriptor(decoded: Tensor) -> Tensor:
    """Decoded video `[B, T, 3, H, W]` in [-1, 1] -> `[B, T, 3, H, W]` in [0, 1] (DySink step 4)."""
    return (decoded.clamp(-1.0, 1.0) * 0.5 + 0.5).clamp(0.0, 1.0)


@torch.no_grad()
def describe_frames(frames: Tensor, encoder: PECoreVision) -> Tensor:
    """DS `PECoreMemoryEncoder.encode_frames`: squash-resize, `2x - 1`, encode in fp32, mean, L2.

    frames `[N, 3, H, W]` in [0, 1] -> descriptor `[output_dim]` (the encoder must be fp32).
    """
    size = encoder.config.image_size
    device = next(encoder.parameters()).device
    x = frames.to(device=device, dtype=torch.float32)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    features = encoder(x * 2.0 - 1.0)  # (N, output_dim)
    return F.normalize(features.mean(dim=0), dim=-1)  # (output_dim,)


@torch.no_grad()
def describe_block(latents: Tensor, vae: WanVAE, encoder: PECoreVision) -> Tensor:
    """The reference's descriptor of one block: its latents decoded alone (a fresh decode, not the
    streamed one), mapped to [0, 1], described. latents `[1, F, C, H, W]` -> `[output_dim]`."""
    return describe_frames(frames_for_descriptor(vae.decode(latents))[0], encoder)
