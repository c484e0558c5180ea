"""PE-Core stage: contrastive descriptors of decoded blocks (InfoNCE over views of places).

A view is one block as DySink describes it at render time: 3 latents decoded alone by the frozen
VAE (9 frames), squash-resized, 2x - 1, PE-Core, mean over frames, L2 norm. Positives: two views of
the same place (small camera shifts, other motions, other latent noise); negatives: the other
places of the batch (far away in the same world, or in other worlds and themes).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.vae import WanVAE
from dysink_cli.toy.data import MOTIONS, random_start, random_world, render_groups
from dysink_cli.toy.world import camera_path

TEMPERATURE = 0.1
VIEW_SHIFT_PX = 20.0
PLACE_SPACING_PX = 400.0
BLOCK_FRAMES = 9  # a block decoded alone: 4 * 3 - 3 frames


def describe_train(pe: PECoreVision, frames: Tensor) -> Tensor:
    """engine.memory.descriptors.describe_frames with autograd, batched.

    frames (N, T, 3, H, W) in [0, 1] -> (N, output_dim) unit descriptors.
    """
    n, t = frames.shape[:2]
    size = pe.config.image_size
    x = F.interpolate(
        frames.flatten(0, 1), size=(size, size), mode="bilinear", align_corners=False, antialias=False
    )
    features = pe(x * 2.0 - 1.0).unflatten(0, (n, t))  # (N, T, D)
    return F.normalize(features.mean(dim=1), dim=-1)


def _view(rng: random.Random, centre: tuple[float, float]) -> Tensor:
    start = (
        centre[0] + rng.uniform(-VIEW_SHIFT_PX, VIEW_SHIFT_PX),
        centre[1] + rng.uniform(-VIEW_SHIFT_PX, VIEW_SHIFT_PX),
    )
    return camera_path(start, [(rng.choice(MOTIONS), BLOCK_FRAMES)])


@torch.no_grad()
def decoded_views(
    vae: WanVAE,
    rng: random.Random,
    generator: torch.Generator,
    worlds: int,
    places: int,
    device: torch.device,
    size: tuple[int, int],
) -> Tensor:
    """(worlds * places, 2, 9, 3, H, W) frames in [0, 1]: two noisy decoded views per place."""
    ws = [random_world(rng) for _ in range(worlds)]
    paths = []
    for _ in ws:
        x, y = random_start(rng)
        angle = rng.uniform(0, 2 * math.pi)
        centres = [
            (x + k * PLACE_SPACING_PX * math.cos(angle), y + k * PLACE_SPACING_PX * math.sin(angle))
            for k in range(places)
        ]
        paths.append([_view(rng, c) for c in centres for _ in range(2)])
    clips = [c for group in render_groups(ws, paths, device, size) for c in group]
    video = torch.stack(clips).transpose(1, 2) * 2 - 1  # (N * 2, 3, 9, H, W)
    z = vae.encode(video)  # (N * 2, 3, 16, h, w), normalised
    sigma = torch.rand(z.shape[0], 1, 1, 1, 1, generator=generator) * 0.3
    z = z + (sigma * torch.randn(z.shape, generator=generator)).to(device)
    frames = vae.decode(z)  # (N * 2, 9, 3, H, W) in [-1, 1]
    return (frames * 0.5 + 0.5).clamp(0, 1).unflatten(0, (-1, 2))


def info_nce(a: Tensor, b: Tensor) -> tuple[Tensor, float]:
    """Symmetric InfoNCE of unit descriptors a, b (N, D) whose rows pair up; and top-1 accuracy."""
    logits = a @ b.T / TEMPERATURE
    labels = torch.arange(a.shape[0], device=a.device)
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    return loss, float((logits.argmax(dim=1) == labels).float().mean())


def pe_step(
    pe: PECoreVision,
    vae: WanVAE,
    opt: torch.optim.Optimizer,
    rng: random.Random,
    generator: torch.Generator,
    batch: tuple[int, int],
    device: torch.device,
    size: tuple[int, int],
) -> dict[str, float]:
    """One optimiser step: batch = (worlds, places per world)."""
    views = decoded_views(vae, rng, generator, *batch, device, size)
    a, b = describe_train(pe, views[:, 0]), describe_train(pe, views[:, 1])
    loss, acc = info_nce(a, b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(pe.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        pos = (a * b).sum(-1).mean()
        off = (a @ b.T).fill_diagonal_(0).sum() / max(1, a.shape[0] * (a.shape[0] - 1))
    return {"loss": loss.item(), "acc": acc, "cos_pos": pos.item(), "cos_neg": off.item()}
