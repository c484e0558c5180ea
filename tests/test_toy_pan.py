"""The toy's "pan" stage (toy/train_pan.py): the shifted-frame target and its mask, the loss on the
model's own rollout, and a trainer step of it from exported weights."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.data import Layout
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES
from dysink_cli.toy.train import start_from_weights
from dysink_cli.toy.train_dit import Blocks, Schedule
from dysink_cli.toy.train_pan import masked_loss, pan_loss, shift_target
from dysink_cli.toy.trainer import Trainer
from tests.test_toy_camera import _exported

MICRO = PROFILES["micro"]


def test_shift_target_moves_the_content_against_the_camera_and_masks_the_revealed_border() -> None:
    prev = torch.randn(4, 2, 5, 6)
    target, mask = shift_target(prev, ["right", "down", "still", "default"], 3)
    assert target.shape == (4, 3, 2, 5, 6) and mask.shape == (4, 3, 1, 5, 6)
    for f in range(3):
        n = f + 1  # the camera pans right: what was n pixels right of x is at x now
        assert torch.equal(target[0, f, :, :, : 6 - n], prev[0, :, :, n:])
        assert mask[0, f, 0, :, : 6 - n].all() and not mask[0, f, 0, :, 6 - n :].any()
        assert torch.equal(target[1, f, :, : 5 - n], prev[1, :, n:])  # down: content moves up
        assert mask[1, f, 0, : 5 - n].all() and not mask[1, f, 0, 5 - n :].any()
    assert torch.equal(target[2], prev[2].expand(3, -1, -1, -1)) and mask[2].all()
    assert not mask[3].any()  # the default drift has no whole-pixel step: left out


def test_the_loss_is_zero_for_the_commanded_pan_and_not_for_the_opposite_one() -> None:
    world = torch.randn(1, 16, 12, 40)  # a strip of latent "world"; the camera pans right over it
    view = lambda x0: world[:, :, :, x0 : x0 + 16]  # noqa: E731
    block = torch.stack([view(1), view(2), view(3)], dim=1)  # (1, 3, 16, 12, 16)
    for motion, zero in (("right", True), ("left", False), ("still", False)):
        target, mask = shift_target(view(0), [motion], 3)
        loss, mse = masked_loss(block, target, mask)
        assert (mse.item() == 0.0) == zero, motion
        assert loss.item() >= mse.item()


def _blocks(dit, chain_blocks: int) -> Blocks:  # noqa: ANN001
    layout = Layout(chain_blocks=chain_blocks, window_blocks=chain_blocks - 1, far="none", far_blocks=0,
                    from_start=True)  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    chain = torch.randn(2, chain_blocks, 3, 16, 4, 4, generator=gen)
    text = torch.randn(2, 5, dit.cfg.text_dim)
    return Blocks(layout, chain, None, torch.tensor([0, 0]), torch.zeros(2, 0), dit.encode_text(text))


def test_pan_loss_trains_the_last_block_on_the_model_s_own_context() -> None:
    dit = new_toy_networks(MICRO.configs, seed=1).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.1)
    freqs, schedule = wan_frequencies(dit.cfg.head_dim), Schedule.shipped()
    captions = ["a snowy field, the camera pans right", "the sea, the camera holds still"]
    draw = (freqs, schedule, torch.Generator(), random.Random(0))
    loss, parts = pan_loss(dit, _blocks(dit, 2), captions, *draw)
    assert torch.isfinite(loss) and parts["shift_mse"] > 0 and 0 < parts["masked_in"] < 1
    loss.backward()
    assert dit.head.head.weight.grad is not None and dit.head.head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="context block"):
        pan_loss(dit, _blocks(dit, 1), captions, *draw)


def test_a_pan_step_from_exported_weights(tmp_path: Path) -> None:
    trainer = Trainer(MICRO, tmp_path / "run", torch.device("cpu"), seed=3)
    start_from_weights(trainer, _exported(tmp_path))
    before = trainer.nets.dit.head.head.weight.clone()
    parts = trainer.step("pan")
    assert trainer.batch is not None and trainer.batch.stage == "pan"
    assert trainer.batch.layout.chain_blocks >= 2
    assert "shift_mse" in parts and not torch.equal(before, trainer.nets.dit.head.head.weight)
    toy_pan = PROFILES["toy-pan"].budgets
    assert toy_pan["pan"][0] > 0 and toy_pan["camera"] == (0, 0) and PROFILES["toy"].budgets["pan"] == (0, 0)
