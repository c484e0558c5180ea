"""DiT stages: flow matching exactly as the engine samples, one block per call (dit_context.py).

"dit" (teacher forcing): every block's noisy passes attend to the clean t = 0 K/V of its context:
the window blocks before it, a static sink (block 0), or 1-2 retrieved blocks at their own distant
positions; timesteps mostly the sampler's four. "sf" (own outputs): the context is the model's own
denoising of the ground truth (rolled out block after block), and the last block is trained on the
sampler's chain: its input at step k is the re-noised x0 prediction of step k - 1. Both regress to
the ground truth; x_t = (1 - sigma) x0 + sigma eps, the model predicts flow eps - x0.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.engine.sampler import flow_to_x0, renoise
from dysink_cli.engine.schedule import NUM_TRAIN_TIMESTEPS, denoising_timesteps, sigma_of, training_sigmas
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.rope import RopeFrequencies
from dysink_cli.toy import degrade as soft
from dysink_cli.toy.data import FRAMES_PER_BLOCK, Layout
from dysink_cli.toy.dit_context import LayerKV, dit_call, fold_blocks, join_context, repeat_text

SAMPLER_STEPS = (1000, 750, 500, 250)
SHIFT = 5.0
SAMPLER_STEP_PROBABILITY = 0.75  # else a uniform training timestep
CONTEXT_NOISE_MAX = 0.1
# Sampler steps a rolled-out context block starts from ([lo, hi) for the first block, then the
# others): its ground truth noised to that step's sigma (step 0: pure noise, the render's case).
StepRanges = tuple[tuple[int, int], tuple[int, int]]
SF_STEPS: StepRanges = ((2, 4), (1, 4))  # "sf": sigma 0.83 or 0.63 first, the truth's detail kept
ROLLOUT_STEPS: StepRanges = ((0, 2), (0, 2))  # "rollout": sigma 1.0 or 0.94, as a render starts
FROM_NOISE: StepRanges = ((0, 1), (0, 1))  # "pan": nothing of the truth


@dataclass(frozen=True)
class Schedule:
    """The shipped sampler's timesteps and sigmas, and the shifted training table."""

    timesteps: Tensor  # (4,) float32
    sigmas: Tensor  # (4,)
    table_t: Tensor  # (1000,)
    table_sigma: Tensor  # (1000,)

    @classmethod
    def shipped(cls) -> Schedule:
        steps = denoising_timesteps(SAMPLER_STEPS, SHIFT)
        sigmas = torch.stack([sigma_of(t, SHIFT) for t in steps])
        table = training_sigmas(SHIFT)
        return cls(steps, sigmas, table * NUM_TRAIN_TIMESTEPS, table)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """(timesteps, sigmas) (B,): a sampler step, or a uniform training timestep."""
        pick = torch.randint(len(self.timesteps), (batch,), generator=generator)
        uniform = torch.randint(NUM_TRAIN_TIMESTEPS, (batch,), generator=generator)
        use_sampler = torch.rand(batch, generator=generator) < SAMPLER_STEP_PROBABILITY
        t = torch.where(use_sampler, self.timesteps[pick], self.table_t[uniform])
        sigma = torch.where(use_sampler, self.sigmas[pick], self.table_sigma[uniform])
        return t, sigma


@dataclass
class Blocks:
    """One batch on the device: latents, positions, text K/V."""

    layout: Layout
    chain: Tensor  # (B, n, 3, C, h, w)
    far: Tensor | None  # (B, k, 3, C, h, w)
    chain_starts: Tensor  # (B,) latent frame of the first chain block
    far_starts: Tensor  # (B, k)
    text_kv: LayerKV


def gaussian(like: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def _rows(values: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device, like.dtype).view(-1, *([1] * (like.dim() - 1)))


def context_kv(
    dit: WanDiT, b: Blocks, freqs: RopeFrequencies, chain: Tensor, far: Tensor | None
) -> tuple[LayerKV | None, LayerKV | None, list[LayerKV]]:
    """Clean t = 0 passes: far blocks alone (batched), then the chain's context blocks in order.

    Returns (memory K/V, sink K/V, per-chain-block K/V); a chain block attends to the sink and to
    the window blocks before it, never to memory (the engine's commit pass).
    """
    lay, rows = b.layout, chain.shape[0]
    far_kv = None
    if far is not None:
        zeros = torch.zeros(rows * lay.far_blocks)
        text = repeat_text(b.text_kv, lay.far_blocks)
        _, kv = dit_call(dit, far.flatten(0, 1), zeros, text, b.far_starts.flatten(), freqs)
        far_kv = fold_blocks(kv, lay.far_blocks)
    sink = far_kv if lay.far == "sink" else None
    clean: list[LayerKV] = []
    for j in range(lay.chain_blocks - 1):
        ctx = join_context([sink, *clean[max(0, j - lay.window_blocks) : j]])
        starts = b.chain_starts + FRAMES_PER_BLOCK * j
        _, kv = dit_call(dit, chain[:, j], torch.zeros(rows), b.text_kv, starts, freqs, ctx)
        clean.append(kv)
    return (far_kv if lay.far == "memory" else None), sink, clean


def noisy_context(
    b: Blocks, j: int, memory: LayerKV | None, sink: LayerKV | None, clean: list[LayerKV]
) -> LayerKV | None:
    """What block j's denoising passes attend to: memory (last block only), sink, its window."""
    lay = b.layout
    mem = memory if j == lay.chain_blocks - 1 else None
    return join_context([mem, sink, *clean[max(0, j - lay.window_blocks) : j]])


def degraded(
    chain: Tensor, far: Tensor | None, spec: soft.Degrade, generator: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """The chain and far blocks with a `spec.share` of the rows blurred and noised (toy/degrade.py);
    untouched, and no draw made, when the share is 0."""
    if not spec.share:
        return chain, far
    blur_px, noise = soft.draw(chain.shape[0], spec, generator)
    chain = soft.blur(chain, blur_px) + _rows(noise, chain) * gaussian(chain, generator)
    far = None if far is None else soft.blur(far, blur_px) + _rows(noise, far) * gaussian(far, generator)
    return chain, far


def teacher_forcing_loss(
    dit: WanDiT, b: Blocks, freqs: RopeFrequencies, schedule: Schedule, generator: torch.Generator,
    last_block_only: bool = False, degrade: soft.Degrade = soft.NONE,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """Flow-matching MSE of every block that has its true context, given clean context K/V (or of
    the last block alone: the "camera" stage, whose context blocks move otherwise than the prompt);
    `degrade`: a share of the rows see their context blurred and noised ("degrade", toy/degrade.py)."""
    rows = b.chain.shape[0]
    sigma_aug = torch.rand(rows, generator=generator) * CONTEXT_NOISE_MAX
    sigma_aug = sigma_aug * (torch.rand(rows, generator=generator) < 0.5)
    chain = b.chain + _rows(sigma_aug, b.chain) * gaussian(b.chain, generator)
    far = None if b.far is None else b.far + _rows(sigma_aug, b.far) * gaussian(b.far, generator)
    chain, far = degraded(chain, far, degrade, generator)  # the targets below stay b.chain, the truth
    memory, sink, clean = context_kv(dit, b, freqs, chain, far)
    losses = []
    for j in range(b.layout.chain_blocks):
        if (j == 0 and not b.layout.from_start) or (last_block_only and j < b.layout.chain_blocks - 1):
            continue  # its true context is not in the sample, or its motion is not the prompt's
        x0 = b.chain[:, j]
        t, sigma = schedule.draw(rows, generator)
        eps = gaussian(x0, generator)
        x_t = (1 - _rows(sigma, x0)) * x0 + _rows(sigma, x0) * eps
        starts = b.chain_starts + FRAMES_PER_BLOCK * j
        flow, _ = dit_call(dit, x_t, t, b.text_kv, starts, freqs, noisy_context(b, j, memory, sink, clean))
        losses.append((flow - (eps - x0)).square().mean())
    loss = torch.stack(losses).mean()
    return loss, {"flow_mse": loss.item(), "last_block": losses[-1].item()}


@torch.no_grad()
def sample_steps(
    dit: WanDiT, x: Tensor, steps: range, text_kv: LayerKV, starts: Tensor, freqs: RopeFrequencies,
    context: LayerKV | None, schedule: Schedule, generator: torch.Generator,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The shipped sampler's `steps` from x (noised to the first one's sigma): (the input of the
    step after them, re-noised; x itself after the last step) and the last x0 (None: no step)."""
    pred = None
    for s in steps:
        flow, _ = dit_call(dit, x, schedule.timesteps[s].expand(x.shape[0]), text_kv, starts, freqs, context)
        pred = flow_to_x0(x, flow, schedule.sigmas[s].to(x.device))
        if s + 1 < len(schedule.timesteps):
            x = renoise(pred, gaussian(x, generator), schedule.sigmas[s + 1].to(x.device))
    return x, pred


@torch.no_grad()
def denoise_from(
    dit: WanDiT, x0: Tensor, step: int, text_kv: LayerKV, starts: Tensor, freqs: RopeFrequencies,
    context: LayerKV | None, schedule: Schedule, generator: torch.Generator,
) -> Tensor:  # fmt: skip
    """The sampler from the ground truth noised to step `step`'s sigma to the end: x0 (B, F, C, h, w)."""
    x = renoise(x0, gaussian(x0, generator), schedule.sigmas[step])
    steps = range(step, len(schedule.timesteps))
    _, pred = sample_steps(dit, x, steps, text_kv, starts, freqs, context, schedule, generator)
    assert pred is not None
    return pred


@torch.no_grad()
def rolled_out_context(
    dit: WanDiT,
    b: Blocks,
    freqs: RopeFrequencies,
    schedule: Schedule,
    generator: torch.Generator,
    rng: random.Random,
    steps: StepRanges = SF_STEPS,
) -> tuple[Tensor, Tensor | None]:
    """The model's own versions of the context blocks, block after block (no grad): each from its
    ground truth noised to a random sampler step of `steps` (far blocks and the first chain block:
    the first range), attending to the blocks generated before it."""
    lay, rows = b.layout, b.chain.shape[0]
    far = None
    if b.far is not None:
        text = repeat_text(b.text_kv, lay.far_blocks)
        flat = denoise_from(
            dit,
            b.far.flatten(0, 1),
            rng.randrange(*steps[0]),
            text,
            b.far_starts.flatten(),
            freqs,
            None,
            schedule,
            generator,
        )
        far = flat.unflatten(0, (rows, lay.far_blocks))
    chain = b.chain.clone()
    sink_kv = None
    if lay.far == "sink" and far is not None:
        _, kv = dit_call(dit, far[:, 0], torch.zeros(rows), b.text_kv, b.far_starts[:, 0], freqs)
        sink_kv = kv
    clean: list[LayerKV] = []
    for j in range(lay.chain_blocks - 1):
        ctx = join_context([sink_kv, *clean[max(0, j - lay.window_blocks) : j]])
        starts = b.chain_starts + FRAMES_PER_BLOCK * j
        step = rng.randrange(*steps[0 if j == 0 else 1])
        chain[:, j] = denoise_from(
            dit, b.chain[:, j], step, b.text_kv, starts, freqs, ctx, schedule, generator
        )
        _, kv = dit_call(dit, chain[:, j], torch.zeros(rows), b.text_kv, starts, freqs, ctx)
        clean.append(kv)
    return chain, far


def own_chain_loss(
    dit: WanDiT,
    b: Blocks,
    freqs: RopeFrequencies,
    schedule: Schedule,
    generator: torch.Generator,
    rng: random.Random,
    steps: StepRanges = SF_STEPS,
) -> tuple[Tensor, dict[str, float]]:
    """The last block at sampler step k of its own chain, given context rolled out from `steps`;
    x0 loss against the ground truth."""
    lay, rows = b.layout, b.chain.shape[0]
    chain, far = rolled_out_context(dit, b, freqs, schedule, generator, rng, steps)
    memory, sink, clean = context_kv(dit, b, freqs, chain, far)
    j = lay.chain_blocks - 1
    ctx = noisy_context(b, j, memory, sink, clean)
    starts = b.chain_starts + FRAMES_PER_BLOCK * j
    x0 = b.chain[:, j]
    k = rng.randrange(len(schedule.timesteps))
    if k == 0:
        x = gaussian(x0, generator)
    else:  # one sampler step from the ground truth noised to step k - 1, then re-noised
        with torch.no_grad():
            x_prev = renoise(x0, gaussian(x0, generator), schedule.sigmas[k - 1])
            t_prev = schedule.timesteps[k - 1].expand(rows)
            flow, _ = dit_call(dit, x_prev, t_prev, b.text_kv, starts, freqs, ctx)
            prev = flow_to_x0(x_prev, flow, schedule.sigmas[k - 1])
        x = renoise(prev, gaussian(x0, generator), schedule.sigmas[k])
    flow, _ = dit_call(dit, x, schedule.timesteps[k].expand(rows), b.text_kv, starts, freqs, ctx)
    pred = x - schedule.sigmas[k].to(x.device) * flow
    mse = (pred - x0).square().mean()
    loss = mse + 0.5 * (pred - x0).abs().mean()
    return loss, {"x0_mse": mse.item(), "chain_step": float(k)}
