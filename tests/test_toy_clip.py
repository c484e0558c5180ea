"""The clip teacher and DMD on the generator's own rollouts (toy/train_clip.py): clips hold one
motion, the clip network sees every frame of a clip, each rolled-out block attends to the blocks
drawn before it, the generator moves only where the clip critics disagree, and the micro schedule
trains the clip network alone, then the generator against it, resuming bit-exactly in both stages."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.captions import parse_prompt
from dysink_cli.toy.data import CLIP_BLOCKS, CLIP_MIX, Layout, plan_sample, random_world, stage_layout
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train_clip import ClipTeacher, clip_dmd_loss, clip_x0, dmd_source, rollout
from dysink_cli.toy.train_dit import Blocks, Schedule
from dysink_cli.toy.train_dmd import DmdCritics
from dysink_cli.toy.trainer import Trainer
from dysink_cli.toy.world import velocity

MICRO = PROFILES["micro-clip"]
CPU = torch.device("cpu")


def test_clip_batches_hold_the_prompts_motion_throughout() -> None:
    rng = random.Random(1)
    for _ in range(40):
        layout = stage_layout(rng, "clip", CLIP_MIX)
        assert (layout.chain_blocks, layout.window_blocks) == (CLIP_BLOCKS, CLIP_BLOCKS - 1)
        assert layout.far == "none"
        sample = plan_sample(rng, random_world(rng), layout, CLIP_MIX)
        steps = sample.chain_path.diff(dim=0)
        want = torch.tensor(velocity(parse_prompt(sample.caption)[1]), dtype=steps.dtype)
        assert torch.allclose(steps, want.expand_as(steps)), sample.caption


def _micro_dit(seed: int = 2):
    dit = new_toy_networks(MICRO.configs, seed=seed).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.02)  # an untrained head predicts flow 0 everywhere
    return dit


def _clip(dit, window: int = CLIP_BLOCKS - 1) -> tuple[Blocks, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    chain = torch.randn(2, CLIP_BLOCKS, 3, 16, 4, 4, generator=gen)
    embeds = torch.randn(2, 6, dit.cfg.text_dim, generator=gen)
    layout = Layout(CLIP_BLOCKS, window, "none", 0, False)
    starts = (torch.tensor([0, 30]), torch.zeros(2, 0))
    return Blocks(layout, chain, None, *starts, dit.encode_text(embeds)), embeds


def test_the_clip_network_sees_every_frame_of_the_clip() -> None:
    dit = _micro_dit()
    b, embeds = _clip(dit)
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    x_t = b.chain.flatten(1, 2)
    t, sigma = torch.full((2,), 500.0), torch.full((2,), 0.5)
    before = clip_x0(dit, embeds, x_t, t, sigma, b.chain_starts, freqs)
    later = x_t.clone()
    later[:, -1] += 1.0  # only the clip's last frame changes
    after = clip_x0(dit, embeds, later, t, sigma, b.chain_starts, freqs)
    assert not torch.allclose(before[:, 0], after[:, 0])  # the first frame's x0 reads the last frame


def test_each_rolled_out_block_attends_to_the_blocks_drawn_before_it() -> None:
    dit = _micro_dit()
    freqs, schedule = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta), Schedule.shipped()

    def drawn(window: int) -> torch.Tensor:
        b, _ = _clip(dit, window)
        return rollout(dit, b, freqs, schedule, torch.Generator().manual_seed(3), random.Random(0))

    with_context, alone = drawn(CLIP_BLOCKS - 1), drawn(0)
    assert with_context.shape == (2, 3 * CLIP_BLOCKS, 16, 4, 4) and with_context.requires_grad
    assert torch.equal(with_context[:, :3], alone[:, :3])  # the first block has nothing before it
    assert not torch.allclose(with_context[:, 3:], alone[:, 3:])  # the later ones read it


def _generator_grad(dit, critics) -> float:
    b, embeds = _clip(dit)
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    loss, parts = clip_dmd_loss(
        dit, critics, b, embeds, freqs, Schedule.shipped(), torch.Generator(), random.Random(0)
    )
    dit.zero_grad()
    critics.nets["fake"].zero_grad()
    loss.backward()
    assert parts["fake_flow_mse"] > 0
    return sum(float(p.grad.abs().sum()) for p in dit.parameters() if p.grad is not None)


def test_the_generator_moves_only_where_the_clip_critics_disagree() -> None:
    dit = _micro_dit()
    critics = DmdCritics()
    critics.start(_micro_dit(seed=7))  # the clip teacher: another network than the generator
    assert _generator_grad(dit, critics) == 0.0
    with torch.no_grad():
        for p in critics.nets["fake"].parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert _generator_grad(dit, critics) > 0.0


def test_a_clip_taught_dmd_stage_needs_the_clip_stage() -> None:
    dit = _micro_dit()
    assert dmd_source(dit, ClipTeacher(), "block") is dit
    with pytest.raises(ValueError, match="clip stage"):
        dmd_source(dit, ClipTeacher(), "clip")


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors, _ = trainer.state()
    return {k: t.clone() for k, t in tensors.items() if k.split(".")[0] in ("dit", "clip", "fake", "teacher")}


def _until(trainer: Trainer, stage: str, steps: int) -> None:
    while not (trainer.stage() == stage and trainer.counters.steps[stage] == steps):
        trainer.run(10, None, lambda _: None, max_steps=1)


def test_the_clip_stage_trains_the_clip_network_alone_then_teaches_dmd(tmp_path: Path) -> None:
    trainer = Trainer(MICRO, tmp_path / "t", CPU, seed=4)
    _until(trainer, "clip", 0)
    entering = _weights(trainer)
    _until(trainer, "dmd", 0)
    taught = _weights(trainer)
    assert all(torch.equal(entering[k], taught[k]) for k in entering if k.startswith("dit."))  # DiT frozen
    assert not torch.equal(taught["clip.head.head.weight"], entering["dit.head.head.weight"])  # clip moved
    assert trainer.run(10, None, lambda _: None)
    done = _weights(trainer)
    for key in (k for k in done if k.startswith("clip.")):
        assert torch.equal(done["teacher." + key[5:]], taught[key])  # dmd's teacher: the clip network
    assert not torch.equal(done["dit.head.head.weight"], taught["dit.head.head.weight"])  # generator moved


@pytest.mark.parametrize("stage", ["clip", "dmd"])
def test_resume_inside_the_clip_stages_is_bit_exact(tmp_path: Path, stage: str) -> None:
    whole = Trainer(MICRO, tmp_path / "whole", CPU, seed=4)
    assert whole.run(10, None, lambda _: None)
    first = Trainer(MICRO, tmp_path / "split", CPU, seed=4)
    _until(first, stage, 1)
    first.save()
    second = Trainer(MICRO, tmp_path / "split", CPU, seed=0)
    second.load(tmp_path / "split")
    assert second.opt_stage == stage and second.clip.net is not None
    assert second.run(10, None, lambda _: None)
    want, got = _weights(whole), _weights(second)
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key
