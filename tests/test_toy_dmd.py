"""The toy's "dmd" stage (toy/train_dmd.py): a zero gradient while the critics agree, a moving
generator once the fake critic has learnt its blocks, and a bit-exact resume inside the stage."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.data import Layout
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train_dit import Blocks, Schedule
from dysink_cli.toy.train_dmd import DmdCritics, dmd_loss
from dysink_cli.toy.trainer import Trainer

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
