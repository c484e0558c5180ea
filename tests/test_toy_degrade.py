"""The toy's "degrade" stage: teacher forcing whose context (never its target) is blurred and noised
as a render's own blocks are (toy/degrade.py)."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy import degrade as soft
from dysink_cli.toy import train_dit, train_dmd
from dysink_cli.toy import trainer as trainer_module
from dysink_cli.toy.data import Layout
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES, STAGES
from dysink_cli.toy.train import start_from_weights
from dysink_cli.toy.trainer import Trainer
from tests.test_toy_camera import _exported
from tests.test_toy_dmd import _blocks as dmd_blocks
from tests.test_toy_pan import _blocks

MICRO = PROFILES["micro"]


def test_blur_matrix_is_the_identity_at_zero_and_keeps_a_constant() -> None:
    m = soft.blur_matrix(7, torch.tensor([0.0, 1.0, 3.0]))
    assert torch.equal(m[0], torch.eye(7))
    assert torch.allclose(m.sum(-1), torch.ones(3, 7))
    assert m[1, 3, 3] > m[1, 3, 4] > m[1, 3, 5] > 0  # centred, falling off with distance
    assert m[2, 3, 3] < m[1, 3, 3]  # wider for a larger sigma


def test_blur_acts_per_row_and_keeps_an_impulse_centred() -> None:
    x = torch.zeros(2, 3, 4, 9, 11)
    x[:, :, :, 4, 5] = 1.0
    y = soft.blur(x, torch.tensor([0.0, 1.0]))
    assert torch.equal(y[0], x[0])  # sigma 0: untouched
    assert (y[1, :, :, 4, 5] < 1.0).all() and (y[1, :, :, 4, 6] > 0).all() and (y[1, :, :, 3, 5] > 0).all()
    assert torch.allclose(y[1].sum((-1, -2)), torch.ones(3, 4), atol=0.01)  # mass kept away from edges
    centre = (y[1, 0, 0] * torch.arange(11.0)).sum() / y[1, 0, 0].sum()
    assert centre == pytest.approx(5.0, abs=1e-5)  # blurring moves nothing: a pan stays a pan


def test_draw_leaves_the_share_it_does_not_choose_sharp() -> None:
    gen = torch.Generator().manual_seed(0)
    sigma, noise = soft.draw(4000, soft.Degrade(share=0.25, blur_px=(0.5, 1.0), noise_max=0.2), gen)
    chosen = sigma > 0
    assert 0.2 < chosen.float().mean() < 0.3
    assert torch.equal(chosen, noise > 0)
    assert sigma[chosen].min() >= 0.5 and sigma.max() <= 1.0 and noise.max() <= 0.2
    assert torch.equal(soft.draw(8, soft.NONE, gen)[0], torch.zeros(8))


def _context_spy(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> list[torch.Tensor]:
    """The chains `module`'s context_kv is called with, from now on (the call itself unchanged)."""
    seen: list[torch.Tensor] = []
    real_context_kv = module.context_kv

    def spy(net, blocks, freqs, chain, far):  # noqa: ANN001, ANN202
        seen.append(chain)
        return real_context_kv(net, blocks, freqs, chain, far)

    monkeypatch.setattr(module, "context_kv", spy)
    return seen


def test_teacher_forcing_degrades_the_context_and_not_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    dit = new_toy_networks(MICRO.configs, seed=1).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.1)
    blocks = _blocks(dit, 3)
    seen = _context_spy(monkeypatch, train_dit)
    freqs, schedule = wan_frequencies(dit.cfg.head_dim), train_dit.Schedule.shipped()
    losses = []
    for spec in (soft.NONE, soft.Degrade(share=1.0, blur_px=(1.5, 1.5), noise_max=0.0)):
        gen = torch.Generator().manual_seed(0)
        losses.append(train_dit.teacher_forcing_loss(dit, blocks, freqs, schedule, gen, degrade=spec)[0])
    sharp, degraded = seen
    # at most the 0.1 context noise of teacher forcing off the truth when sharp, far more when blurred
    assert (sharp - blocks.chain).abs().mean() < 0.1
    assert (degraded - soft.blur(sharp, torch.full((sharp.shape[0],), 1.5))).abs().max() < 1e-5
    assert (degraded - blocks.chain).abs().mean() > 3 * (sharp - blocks.chain).abs().mean()
    assert not torch.equal(losses[0], losses[1])  # the same draws and targets, another context


def test_a_degrade_step_from_exported_weights(tmp_path: Path) -> None:
    assert STAGES.index("text") < STAGES.index("degrade") < STAGES.index("dmd")
    trainer = Trainer(MICRO, tmp_path / "run", torch.device("cpu"), seed=3)
    start_from_weights(trainer, _exported(tmp_path))
    before = trainer.nets.dit.head.head.weight.clone()
    parts = [trainer.step("degrade") for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(p["flow_mse"])) for p in parts)
    assert not torch.equal(before, trainer.nets.dit.head.head.weight)
    assert PROFILES["toy-degrade"].budgets["degrade"][0] > 0 and PROFILES["toy"].budgets["degrade"] == (0, 0)


def test_dmd_sees_the_degraded_context_in_all_three_dits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The "dmd" stage of "toy-degrade-dmd": generator, teacher and fake attend to the blurred
    context; a share of 0 is the shipped recipe, draw for draw."""
    dit = new_toy_networks(MICRO.configs, seed=2).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.1)
    critics = train_dmd.DmdCritics()
    critics.start(dit)
    b, embeds = dmd_blocks(dit, Layout(3, 2, "sink", 1, False))
    seen = _context_spy(monkeypatch, train_dmd)
    freqs, schedule = wan_frequencies(dit.cfg.head_dim), train_dit.Schedule.shipped()
    specs = {
        "none": soft.NONE, "zero share": soft.Degrade(share=0.0, noise_max=1.0),
        "soft": soft.Degrade(share=1.0, blur_px=(1.5, 1.5), noise_max=0.0),
    }  # fmt: skip
    losses, contexts = {}, {}
    for name, spec in specs.items():
        seen.clear()
        with torch.no_grad():
            losses[name], _ = train_dmd.dmd_loss(
                dit, critics, b, embeds, freqs, schedule, torch.Generator().manual_seed(1), random.Random(0),
                degrade=spec,
            )  # fmt: skip
        contexts[name] = list(seen)
    assert torch.equal(losses["none"], losses["zero share"])  # share 0: no draw, the same loss
    blurred = soft.blur(b.chain, torch.full((b.chain.shape[0],), 1.5))
    assert len(contexts["soft"]) == 3  # the generator's, the fake's and the teacher's context
    assert all(torch.allclose(c, blurred, atol=1e-5) for c in contexts["soft"])
    assert all(torch.equal(c, b.chain) for c in contexts["none"])
    assert not torch.equal(losses["soft"], losses["none"])
    assert PROFILES["toy-degrade-dmd"].dmd_degrade.share > 0
    assert PROFILES["toy-degrade"].dmd_degrade.share == PROFILES["toy"].dmd_degrade.share == 0


def test_the_dit_stage_degrades_its_context_as_the_profile_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """"toy-fine-flow" teaches the flow model soft context from its "dit" stage on; "toy" does not."""
    specs: list[soft.Degrade] = []
    real = trainer_module.teacher_forcing_loss

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        specs.append(args[-1])
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "teacher_forcing_loss", spy)
    half = soft.Degrade(share=0.5)
    for profile in (MICRO, replace(MICRO, dit_degrade=half)):
        Trainer(profile, tmp_path / str(len(specs)), torch.device("cpu"), seed=5).step("dit")
    assert specs == [soft.NONE, half]
    flow, plain = PROFILES["toy-fine-flow"], PROFILES["toy-fine-flow-plain"]
    assert flow.dit_degrade.share > 0 and PROFILES["toy"].dit_degrade.share == 0
    assert flow.budgets["sf"] == (0, 0) and flow.budgets["dit"][0] <= 9.5  # one call of < 10 minutes
    assert flow.dmd_guidance > 0 and flow.dmd_degrade.share > 0
    assert replace(flow, dmd_guidance=0.0) == plain  # the control arm differs in the guidance alone
