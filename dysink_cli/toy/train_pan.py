"""The "pan" stage: the camera words on the toy's own free-running context, with no ground truth.

A pan moves the view one latent pixel per latent frame (2 px per frame, 4 frames per latent, the
VAE's stride 8), and the toy VAE's latents follow the view (bench/toy_latent_shift.py: the previous
latent frame shifted one pixel predicts the next at 0.15-0.39 relative error, 0.43-0.72 unshifted).
So the new block's frame f should be the last context frame shifted f + 1 pixels the way the prompt
pans (the content moves the other way); the revealed border is left free. The context is the
model's own rollout from pure noise, as at render time, where the camera is lost.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor

from dysink_cli.model.dit import WanDiT
from dysink_cli.model.rope import RopeFrequencies
from dysink_cli.toy.captions import parse_prompt
from dysink_cli.toy.data import FRAMES_PER_BLOCK
from dysink_cli.toy.dit_context import dit_call
from dysink_cli.toy.train_dit import (
    FROM_NOISE,
    Blocks,
    Schedule,
    context_kv,
    gaussian,
    noisy_context,
    rolled_out_context,
    sample_steps,
)

# latent pixels the content moves per latent frame, (dx, dy), when the camera pans this way
CONTENT_STEP = {"left": (1, 0), "right": (-1, 0), "up": (0, 1), "down": (0, -1), "still": (0, 0)}


def shift_target(prev: Tensor, motions: list[str], frames: int) -> tuple[Tensor, Tensor]:
    """prev (B, C, h, w): each sample's last context latent frame; motions: its prompt's camera word.
    -> target (B, frames, C, h, w): frame f is prev with its content moved f + 1 pixels the way the
    camera's motion moves it, and mask (B, frames, 1, h, w): 1 where that is defined (0 at the
    revealed border, and everywhere for a motion with no whole-pixel step, e.g. the default drift)."""
    b, c, h, w = prev.shape
    target = torch.zeros(b, frames, c, h, w, dtype=prev.dtype, device=prev.device)
    mask = torch.zeros(b, frames, 1, h, w, dtype=prev.dtype, device=prev.device)
    for i, motion in enumerate(motions):
        if motion not in CONTENT_STEP:
            continue
        sx, sy = CONTENT_STEP[motion]
        for f in range(frames):
            dx, dy = sx * (f + 1), sy * (f + 1)  # target[y + dy, x + dx] = prev[y, x]
            if abs(dx) >= w or abs(dy) >= h:
                continue
            src = prev[i, :, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            target[i, f, :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = src
            mask[i, f, :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = 1
    return target, mask


def masked_loss(pred: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """(MSE + 0.5 L1 over the masked elements, the MSE alone); zero when nothing is masked in."""
    weight = mask.expand_as(pred)
    count = weight.sum().clamp_min(1.0)
    diff = (pred - target) * weight
    mse = diff.square().sum() / count
    return mse + 0.5 * diff.abs().sum() / count, mse


def pan_loss(
    dit: WanDiT,
    b: Blocks,
    captions: list[str],
    freqs: RopeFrequencies,
    schedule: Schedule,
    generator: torch.Generator,
    rng: random.Random,
) -> tuple[Tensor, dict[str, float]]:
    """The last block at a random sampler step of its own chain, after context the model generated
    from pure noise; x0 against the shifted last context frame (needs a layout with context)."""
    lay, rows = b.layout, b.chain.shape[0]
    if lay.chain_blocks < 2:
        raise ValueError("the pan loss needs a context block before the trained one")
    chain, far = rolled_out_context(dit, b, freqs, schedule, generator, rng, FROM_NOISE)
    memory, sink, clean = context_kv(dit, b, freqs, chain, far)
    j = lay.chain_blocks - 1
    ctx = noisy_context(b, j, memory, sink, clean)
    starts = b.chain_starts + FRAMES_PER_BLOCK * j
    k = rng.randrange(len(schedule.timesteps))
    noise = gaussian(b.chain[:, j], generator)  # the sampler's own steps before step k, from it
    x, _ = sample_steps(dit, noise, range(k), b.text_kv, starts, freqs, ctx, schedule, generator)
    flow, _ = dit_call(dit, x, schedule.timesteps[k].expand(rows), b.text_kv, starts, freqs, ctx)
    pred = x - schedule.sigmas[k].to(x.device) * flow
    motions = [parse_prompt(caption)[1] for caption in captions]
    target, mask = shift_target(chain[:, j - 1, -1], motions, pred.shape[1])
    loss, mse = masked_loss(pred, target.detach(), mask)
    return loss, {"shift_mse": mse.item(), "chain_step": float(k), "masked_in": mask.mean().item()}
