"""The toy's "dmd" stage (toy/train_dmd.py): a zero gradient while the critics agree, a moving
generator once the fake critic has learnt its blocks, a bit-exact resume inside the stage, and the
real score's contrast guidance (contrast captions, a no-op when the contrast is the prompt)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.captions import parse_prompt, random_caption
from dysink_cli.toy.data import Layout
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train_dit import Blocks, Schedule
from dysink_cli.toy.train_dmd import DmdCritics, contrast_caption, dmd_loss
from dysink_cli.toy.trainer import Trainer
from dysink_cli.toy.world import THEMES

MICRO = PROFILES["micro"]


def _blocks(dit, layout: Layout, rows: int = 2) -> tuple[Blocks, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    chain = torch.randn(rows, layout.chain_blocks, 3, 16, 4, 4, generator=gen)
    far = torch.randn(rows, 1, 3, 16, 4, 4, generator=gen) if layout.far != "none" else None
    embeds = torch.randn(rows, 6, dit.cfg.text_dim, generator=gen)
    starts, far_starts = torch.tensor([6, 30]), torch.tensor([[0], [0]])
    return Blocks(layout, chain, far, starts, far_starts, dit.encode_text(embeds)), embeds


def _generator_grad(dit, critics, layout: Layout) -> float:
    b, embeds = _blocks(dit, layout)
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    loss, parts = dmd_loss(
        dit, critics, b, embeds, freqs, Schedule.shipped(), torch.Generator(), random.Random(0)
    )
    dit.zero_grad()
    critics.nets["fake"].zero_grad()
    loss.backward()
    assert parts["exit_step"] in (0.0, 1.0, 2.0, 3.0) and parts["fake_flow_mse"] > 0
    return sum(float(p.grad.abs().sum()) for p in dit.parameters() if p.grad is not None)


def test_the_generator_moves_only_where_the_critics_disagree() -> None:
    dit = new_toy_networks(MICRO.configs, seed=2).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.02)  # an untrained head predicts flow 0 everywhere
    critics = DmdCritics()
    critics.start(dit)
    sink = Layout(2, 1, "sink", 1, False)
    assert _generator_grad(dit, critics, sink) == 0.0  # fake == teacher: nothing to match yet
    assert not any(p.requires_grad for p in critics.nets["teacher"].parameters())
    with torch.no_grad():
        for p in critics.nets["fake"].parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert _generator_grad(dit, critics, sink) > 0.0
    assert _generator_grad(dit, critics, Layout(1, 0, "none", 0, True)) > 0.0  # an opening too


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    tensors, _ = trainer.state()
    return {k: t.clone() for k, t in tensors.items() if k.split(".")[0] in ("dit", "fake", "teacher")}


def test_resume_inside_the_dmd_stage_is_bit_exact(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    steps_before_dmd = sum(steps for stage, (_, steps) in MICRO.budgets.items() if stage != "dmd")
    whole = Trainer(MICRO, tmp_path / "whole", cpu, seed=4)
    assert whole.run(10, None, lambda _: None)
    first = Trainer(MICRO, tmp_path / "split", cpu, seed=4)
    first.run(10, None, lambda _: None, max_steps=steps_before_dmd + 1)
    assert first.stage() == "dmd" and first.counters.steps["dmd"] == 1
    second = Trainer(MICRO, tmp_path / "split", cpu, seed=0)
    second.load(tmp_path / "split")
    assert second.critics.nets and second.opt_stage == "dmd"
    assert second.run(10, None, lambda _: None)
    want, got = _weights(whole), _weights(second)
    assert want.keys() == got.keys() and any(k.startswith("fake.") for k in want)
    for key in want:
        assert torch.equal(want[key], got[key]), key
    assert not torch.equal(want["dit.head.head.weight"], want["teacher.head.head.weight"])  # it moved


def test_contrast_captions_name_another_theme_and_motion() -> None:
    rng = random.Random(3)
    for _ in range(200):
        theme = rng.choice(THEMES)
        motion = rng.choice(("left", "right", "up", "down", "still", "default"))
        caption = random_caption(rng, theme, motion)
        contrast = contrast_caption(caption, THEMES)
        other_theme, other_motion = parse_prompt(contrast)
        assert other_theme in THEMES and other_theme != parse_prompt(caption)[0], (caption, contrast)
        assert other_motion != parse_prompt(caption)[1], (caption, contrast)
        assert contrast_caption(caption, THEMES) == contrast  # seeded by the caption alone


def _guided_loss(dit, critics, contrast: torch.Tensor | None, guidance: float) -> float:
    b, embeds = _blocks(dit, Layout(2, 1, "sink", 1, False))
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    with torch.no_grad():
        loss, _ = dmd_loss(
            dit, critics, b, embeds, freqs, Schedule.shipped(), torch.Generator().manual_seed(1),
            random.Random(0), contrast, guidance,
        )  # fmt: skip
    return loss.item()


def test_guidance_moves_the_real_score_away_from_the_contrast() -> None:
    """Guided by its own prompt the real score is unchanged; by another caption, it moves."""
    dit = new_toy_networks(MICRO.configs, seed=2).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.02)
    torch.nn.init.normal_(dit.text_embedding[0].weight, std=0.5)  # the teacher reads its text
    critics = DmdCritics()
    critics.start(dit)
    _, embeds = _blocks(dit, Layout(2, 1, "sink", 1, False))
    plain = _guided_loss(dit, critics, None, 0.0)
    assert _guided_loss(dit, critics, embeds, 3.0) == plain
    other = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(9))
    assert _guided_loss(dit, critics, other, 3.0) != plain
    assert _guided_loss(dit, critics, other, 0.0) == plain


def test_a_guided_dmd_stage_trains(tmp_path: Path) -> None:
    """The micro schedule with guidance runs to the end, and its generator ends elsewhere."""
    cpu = torch.device("cpu")
    runs = {}
    for guidance in (0.0, 3.0):
        trainer = Trainer(replace(MICRO, dmd_guidance=guidance), tmp_path / str(guidance), cpu, seed=4)
        assert trainer.run(10, None, lambda _: None)
        runs[guidance] = _weights(trainer)["dit.head.head.weight"]
    assert not torch.equal(runs[0.0], runs[3.0])
