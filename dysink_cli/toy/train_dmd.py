"""The "dmd" stage: distribution-matching distillation of the 4-step sampler (as Self-Forcing trains).

Trained by mean-squared error, the shipped sampler (x0, then fresh noise, four times) returns the
posterior mean of a block: the theme's average ground without landmarks, although the same DiT
integrated deterministically over 8 steps draws them (bench/RESULTS.md). DMD instead moves each
generated block x^ along the difference of two denoisers at a random noise level: the frozen
teacher ("real": the DiT before this stage) and a "fake" copy that keeps learning the generator's
own outputs by flow matching. Where they disagree, x^ is off the data distribution; their x0
difference, normalised by |x^ - real x0|, is the gradient (DMD, Yin et al. 2024). The generator runs
the shipped chain from noise with the block's clean context, its gradient taken at one random exit
step (every step learns to end the chain). No classifier-free guidance: the toy was trained without
dropping the prompt. `guidance` > 0 (the profile's dmd_guidance) guides the real score by contrast
instead: real x0 + s (real x0 - the teacher's x0 under a caption naming another theme and another
camera motion), which sharpens what the teacher reads from the words (Self-Forcing guides its real
score, by CFG). 0 is the shipped recipe.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor, nn

from dysink_cli.engine.sampler import flow_to_x0, renoise
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.rope import RopeFrequencies
from dysink_cli.toy import degrade as soft
from dysink_cli.toy.captions import MOTIONS, parse_prompt, random_caption
from dysink_cli.toy.data import FRAMES_PER_BLOCK
from dysink_cli.toy.dit_context import LayerKV, dit_call
from dysink_cli.toy.train_dit import Blocks, Schedule, _rows, context_kv, degraded, gaussian, noisy_context
from dysink_cli.toy.world import THEMES


class DmdCritics:
    """The stage's two denoisers, copies of the DiT as it enters the stage: the frozen "teacher"
    (the real distribution's) and the "fake" one, trained on the generator's blocks. Owns their
    weights in checkpoints (keys `teacher.*`, `fake.*`; absent before the stage)."""

    def __init__(self) -> None:
        self.nets: dict[str, WanDiT] = {}

    def start(self, source: WanDiT) -> None:
        """Both copied from `source`: the DiT, or the clip teacher (train_clip.py)."""
        if not self.nets:
            teacher = copy.deepcopy(source).eval().requires_grad_(False)
            self.nets = {"teacher": teacher, "fake": copy.deepcopy(source).train().requires_grad_(True)}

    def trained(self) -> list[WanDiT]:
        return [self.nets["fake"]] if self.nets else []

    def state(self) -> dict[str, Tensor]:
        return {f"{name}.{k}": t for name, net in self.nets.items() for k, t in net.state_dict().items()}

    def load_state(self, tensors: dict[str, Tensor], dit: WanDiT) -> None:
        self.nets = {}
        if any(k.startswith("fake.") for k in tensors):  # a checkpoint inside the stage
            self.start(dit)
            for name, net in self.nets.items():
                own = {k[len(name) + 1 :]: t for k, t in tensors.items() if k.startswith(name + ".")}
                net.load_state_dict(own, strict=True)


def contrast_caption(caption: str, themes: tuple[str, ...]) -> str:
    """A caption naming another of `themes` and another camera motion than `caption` does, drawn
    from a generator seeded by the caption itself (the training's random streams stay untouched)."""
    theme, motion = parse_prompt(caption)
    rng = random.Random(caption)
    other = rng.choice([m for m in MOTIONS if m not in (motion, "default")])  # "default" names none
    return random_caption(rng, rng.choice([t for t in themes if t != theme]), other)


@torch.no_grad()
def contrast_embeds(t5: nn.Module, tokenizer: Callable, captions: list[str], device: torch.device) -> Tensor:
    """The text encoder's output for each caption's contrast_caption (among the world's themes)."""
    ids, mask = tokenizer([contrast_caption(c, THEMES) for c in captions])
    return t5.encode(ids.to(device), mask.to(device))


SIGMA_INDEX_RANGE = (20, 980)  # DMD's noise levels: the training table without its two ends
MIN_NORMALISER = 1e-3


def last_block_context(net: WanDiT, b: Blocks, text_kv: LayerKV, freqs: RopeFrequencies) -> LayerKV | None:
    """What `net` attends to while denoising the chain's last block: its own clean context K/V."""
    with torch.no_grad():
        memory, sink, clean = context_kv(net, replace(b, text_kv=text_kv), freqs, b.chain, b.far)
    return noisy_context(b, b.layout.chain_blocks - 1, memory, sink, clean)


def generate(
    dit: WanDiT, like: Tensor, starts: Tensor, text_kv: LayerKV, freqs: RopeFrequencies, schedule: Schedule,
    generator: torch.Generator, exit_step: int, context: LayerKV | None,
) -> Tensor:  # fmt: skip
    """A block shaped `like` at latent frames `starts` by the shipped sampler from noise, stopped at
    `exit_step`: its x0 prediction there, with gradients through that step only (B, F, C, h, w)."""
    rows = like.shape[0]
    x = gaussian(like, generator)
    with torch.no_grad():
        for s in range(exit_step):
            sigma = schedule.sigmas[s].to(x.device)
            flow, _ = dit_call(dit, x, schedule.timesteps[s].expand(rows), text_kv, starts, freqs, context)
            x = renoise(flow_to_x0(x, flow, sigma), gaussian(like, generator), schedule.sigmas[s + 1])
    flow, _ = dit_call(dit, x, schedule.timesteps[exit_step].expand(rows), text_kv, starts, freqs, context)
    return x - schedule.sigmas[exit_step].to(x.device) * flow


def noised(
    x0: Tensor, schedule: Schedule, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """x0 at a random level of the training table: (x_t, timesteps (B,), sigmas (B,), noise)."""
    low, high = SIGMA_INDEX_RANGE
    index = torch.randint(low, high, (x0.shape[0],), generator=generator)
    t, sigma = schedule.table_t[index], schedule.table_sigma[index]
    eps = gaussian(x0, generator)
    s = _rows(sigma, x0)
    return (1 - s) * x0 + s * eps, t, sigma, eps


def teacher_x0(
    teacher: WanDiT, b: Blocks, embeds: Tensor, x_t: Tensor, t: Tensor, sigma: Tensor, freqs: RopeFrequencies
) -> Tensor:
    """The teacher's x0 of the chain's last block under the captions `embeds` encode (context too)."""
    text = teacher.encode_text(embeds)
    starts = b.chain_starts + FRAMES_PER_BLOCK * (b.layout.chain_blocks - 1)
    context = last_block_context(teacher, b, text, freqs)
    return x_t - _rows(sigma, x_t) * dit_call(teacher, x_t, t, text, starts, freqs, context)[0]


def dmd_loss(
    dit: WanDiT, critics: DmdCritics, b: Blocks, embeds: Tensor, freqs: RopeFrequencies,
    schedule: Schedule, generator: torch.Generator, rng: random.Random,
    contrast_embeds: Tensor | None = None, guidance: float = 0.0, degrade: soft.Degrade = soft.NONE,
) -> tuple[Tensor, dict[str, float]]:  # fmt: skip
    """Generator loss (DMD) plus the fake denoiser's flow-matching loss on the generator's blocks.

    `embeds`: the text encoder's output for the batch's captions (each DiT embeds it itself);
    `contrast_embeds`: its output for their contrast captions, used when `guidance` > 0; `degrade`:
    a share of the rows see their context blurred and noised by all three DiTs (toy/degrade.py)."""
    teacher, fake = critics.nets["teacher"], critics.nets["fake"]
    truth = b.chain[:, -1]
    chain, far = degraded(b.chain, b.far, degrade, generator)  # no draw when the share is 0
    b = replace(b, chain=chain, far=far)
    starts = b.chain_starts + FRAMES_PER_BLOCK * (b.layout.chain_blocks - 1)
    fake_text = fake.encode_text(embeds)
    exit_step = rng.randrange(len(schedule.timesteps))
    own = last_block_context(dit, b, b.text_kv, freqs)
    x_hat = generate(dit, truth, starts, b.text_kv, freqs, schedule, generator, exit_step, own)
    fake_context = last_block_context(fake, b, fake_text, freqs)
    x_t, t, sigma, _ = noised(x_hat.detach(), schedule, generator)
    with torch.no_grad():
        real_x0 = teacher_x0(teacher, b, embeds, x_t, t, sigma, freqs)
        if guidance > 0 and contrast_embeds is not None:
            contrast_x0 = teacher_x0(teacher, b, contrast_embeds, x_t, t, sigma, freqs)
            real_x0 = real_x0 + guidance * (real_x0 - contrast_x0)
        fake_x0 = x_t - _rows(sigma, x_t) * dit_call(fake, x_t, t, fake_text, starts, freqs, fake_context)[0]
    generator_loss = matching_loss(x_hat, real_x0, fake_x0)
    clean = x_hat.detach()
    fake_loss = fake_flow_loss(
        lambda x, steps: dit_call(fake, x, steps, fake_text, starts, freqs, fake_context)[0],
        clean, schedule, generator,
    )
    truth_mse = (clean - truth).square().mean()
    return generator_loss + fake_loss, {
        "dmd": generator_loss.item(), "fake_flow_mse": fake_loss.item(), "exit_step": float(exit_step),
        "x0_mse_to_truth": truth_mse.item(), "x0_std": clean.std().item(),
    }  # fmt: skip


def matching_loss(x_hat: Tensor, real_x0: Tensor, fake_x0: Tensor) -> Tensor:
    """DMD's generator loss: half the squared distance of x_hat to itself moved along the two
    denoisers' difference, normalised per sample by |x_hat - real x0| (gradient: that difference)."""
    with torch.no_grad():
        dims = tuple(range(1, x_hat.dim()))
        scale = (x_hat - real_x0).abs().mean(dim=dims, keepdim=True).clamp_min(MIN_NORMALISER)
        target = x_hat - (fake_x0 - real_x0) / scale
    return 0.5 * (x_hat - target).square().mean()


def fake_flow_loss(
    flow_of: Callable[[Tensor, Tensor], Tensor], clean: Tensor, schedule: Schedule, generator: torch.Generator
) -> Tensor:
    """The fake denoiser's flow matching on the generator's (detached) output `clean`;
    `flow_of(x_t, timesteps)` is the fake's call."""
    x_t, t, _, eps = noised(clean, schedule, generator)
    return (flow_of(x_t, t) - (eps - clean)).square().mean()
