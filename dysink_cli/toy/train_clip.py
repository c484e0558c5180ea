"""A clip teacher for DMD on the generator's own rollouts (Self-Forcing's recipe at toy size).

The "dmd" stage's default teacher is the causal DiT scoring one block given clean context. Given a
still context it accepts a still block, so it cannot tell the generator that a pan stopped: the toy's
pan dies at the first block it drew itself (bench/RESULTS.md). Self-Forcing's teacher is a
bidirectional model that scores the whole rolled-out video at once. Here that teacher is a copy of
the DiT called on a clip of CLIP_BLOCKS blocks in one call (every frame attends to every frame, one
noise level), trained by flow matching on ground-truth clips in the "clip" stage; only the prompt
says which way such a clip moves. With `Profile.dmd_teacher = "clip"`, the "dmd" stage then rolls
out CLIP_BLOCKS blocks from noise, each attending to the clean K/V of the blocks it drew before (the
render's case), and moves the whole clip along the clip teacher's and a clip fake's difference.
"""

from __future__ import annotations

import copy
import random

import torch
from torch import Tensor

from dysink_cli.engine.schedule import NUM_TRAIN_TIMESTEPS
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.rope import RopeFrequencies
from dysink_cli.toy.data import CLIP_BLOCKS, FRAMES_PER_BLOCK
from dysink_cli.toy.dit_context import LayerKV, dit_call, join_context
from dysink_cli.toy.train_dit import Blocks, Schedule, _rows, gaussian
from dysink_cli.toy.train_dmd import DmdCritics, fake_flow_loss, generate, matching_loss, noised


def dmd_source(dit: WanDiT, clip: ClipTeacher, teacher: str) -> WanDiT:
    """What the dmd stage's teacher and fake start from (Profile.dmd_teacher): the DiT ("block"), or
    the trained clip teacher ("clip")."""
    if teacher == "block":
        return dit
    if clip.net is None:
        raise ValueError("dmd_teacher 'clip' needs the clip stage first: give it a budget")
    return clip.net


class ClipTeacher:
    """The "clip" stage's network: a copy of the DiT as it enters the stage, trained on whole clips.
    Owns its weights in checkpoints (keys `clip.*`; absent before the stage)."""

    def __init__(self) -> None:
        self.net: WanDiT | None = None

    def start(self, dit: WanDiT) -> WanDiT:
        if self.net is None:
            self.net = copy.deepcopy(dit).train().requires_grad_(True)
        return self.net

    def state(self) -> dict[str, Tensor]:
        return {} if self.net is None else {f"clip.{k}": t for k, t in self.net.state_dict().items()}

    def load_state(self, tensors: dict[str, Tensor], dit: WanDiT) -> None:
        self.net = None
        own = {k[5:]: t for k, t in tensors.items() if k.startswith("clip.")}
        if own:
            self.start(dit).load_state_dict(own, strict=True)


def clip_x0(net: WanDiT, embeds: Tensor, x_t: Tensor, t: Tensor, sigma: Tensor, starts: Tensor,
            freqs: RopeFrequencies) -> Tensor:  # fmt: skip
    """A clip network's x0 of the whole clip x_t (B, 3n, C, h, w) at timesteps t, sigmas sigma (B,)."""
    flow, _ = dit_call(net, x_t, t, net.encode_text(embeds), starts, freqs)
    return x_t - _rows(sigma, x_t) * flow


def clip_flow_loss(
    net: WanDiT, b: Blocks, embeds: Tensor, freqs: RopeFrequencies, schedule: Schedule,
    generator: torch.Generator,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """Flow matching of the clip network on the batch's ground-truth clips, every frame at one
    timestep per clip drawn uniformly from the shifted training table (DMD asks it at all levels)."""
    x0 = b.chain.flatten(1, 2)
    index = torch.randint(NUM_TRAIN_TIMESTEPS, (x0.shape[0],), generator=generator)
    t, sigma = schedule.table_t[index], schedule.table_sigma[index]
    eps = gaussian(x0, generator)
    x_t = (1 - _rows(sigma, x0)) * x0 + _rows(sigma, x0) * eps
    flow, _ = dit_call(net, x_t, t, net.encode_text(embeds), b.chain_starts, freqs)
    loss = (flow - (eps - x0)).square().mean()
    return loss, {"clip_flow_mse": loss.item()}


def rollout(
    dit: WanDiT, b: Blocks, freqs: RopeFrequencies, schedule: Schedule, generator: torch.Generator,
    rng: random.Random,
) -> Tensor:  # fmt: skip
    """The generator's clip (B, 3n, C, h, w): its n blocks by the shipped sampler from noise, each
    attending to the clean K/V of the blocks it drew before (its window), each stopped at its own
    random exit step with gradients through that step only; the clean passes see it detached."""
    lay, rows = b.layout, b.chain.shape[0]
    drawn: list[Tensor] = []
    clean: list[LayerKV] = []
    for j in range(lay.chain_blocks):
        context = join_context(clean[max(0, j - lay.window_blocks) : j])
        starts = b.chain_starts + FRAMES_PER_BLOCK * j
        exit_step = rng.randrange(len(schedule.timesteps))
        x0 = generate(dit, b.chain[:, j], starts, b.text_kv, freqs, schedule, generator, exit_step, context)
        drawn.append(x0)
        if j + 1 < lay.chain_blocks:
            with torch.no_grad():
                _, kv = dit_call(dit, x0.detach(), torch.zeros(rows), b.text_kv, starts, freqs, context)
            clean.append(kv)
    return torch.cat(drawn, dim=1)


def clip_dmd_loss(
    dit: WanDiT, critics: DmdCritics, b: Blocks, embeds: Tensor, freqs: RopeFrequencies,
    schedule: Schedule, generator: torch.Generator, rng: random.Random,
    contrast_embeds: Tensor | None = None, guidance: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """DMD of the generator's rolled-out clip against the clip teacher (guided by contrast captions
    when `guidance` > 0, as train_dmd.dmd_loss), plus the clip fake's flow matching on that clip."""
    assert b.layout.chain_blocks == CLIP_BLOCKS, "the clip teacher scores clips of CLIP_BLOCKS blocks"
    teacher, fake = critics.nets["teacher"], critics.nets["fake"]
    x_hat = rollout(dit, b, freqs, schedule, generator, rng)
    x_t, t, sigma, _ = noised(x_hat.detach(), schedule, generator)
    with torch.no_grad():
        real_x0 = clip_x0(teacher, embeds, x_t, t, sigma, b.chain_starts, freqs)
        if guidance > 0 and contrast_embeds is not None:
            contrast_x0 = clip_x0(teacher, contrast_embeds, x_t, t, sigma, b.chain_starts, freqs)
            real_x0 = real_x0 + guidance * (real_x0 - contrast_x0)
        fake_x0 = clip_x0(fake, embeds, x_t, t, sigma, b.chain_starts, freqs)
    generator_loss = matching_loss(x_hat, real_x0, fake_x0)
    fake_text = fake.encode_text(embeds)
    fake_loss = fake_flow_loss(
        lambda x, steps: dit_call(fake, x, steps, fake_text, b.chain_starts, freqs)[0],
        x_hat.detach(), schedule, generator,
    )
    clean = x_hat.detach()
    truth_mse = (clean - b.chain.flatten(1, 2)).square().mean()  # a free rollout: logged, not a target
    return generator_loss + fake_loss, {
        "dmd": generator_loss.item(), "fake_flow_mse": fake_loss.item(),
        "x0_std": clean.std().item(), "x0_mse_to_truth": truth_mse.item(),
    }  # fmt: skip
