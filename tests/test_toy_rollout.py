"""The toy's "rollout" stage: self-forcing on context rolled out from (near) pure noise, as a render
starts (train_dit.ROLLOUT_STEPS), and its trainer step from exported weights."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import torch

from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.models import new_toy_networks
from dysink_cli.toy.profiles import PROFILES, STAGES
from dysink_cli.toy.train import start_from_weights
from dysink_cli.toy.train_dit import FROM_NOISE, SF_STEPS, Schedule, rolled_out_context
from dysink_cli.toy.trainer import Trainer
from tests.test_toy_camera import _exported
from tests.test_toy_pan import _blocks

MICRO = PROFILES["micro"]


def _rolled(dit, blocks, steps, seed: int = 0) -> torch.Tensor:  # noqa: ANN001
    freqs, schedule = wan_frequencies(dit.cfg.head_dim), Schedule.shipped()
    gen, rng = torch.Generator().manual_seed(seed), random.Random(seed)
    return rolled_out_context(dit, blocks, freqs, schedule, gen, rng, steps)[0]


def test_context_from_pure_noise_forgets_the_truth_and_sf_context_keeps_it() -> None:
    dit = new_toy_networks(MICRO.configs, seed=1).dit
    torch.nn.init.normal_(dit.head.head.weight, std=0.1)
    a = _blocks(dit, 3)
    b = dataclasses.replace(a, chain=a.chain + 5.0)  # another ground truth, the same prompt and draws
    same = lambda steps: torch.equal(_rolled(dit, a, steps)[:, :2], _rolled(dit, b, steps)[:, :2])  # noqa: E731
    assert same(FROM_NOISE)  # step 0 noises to sigma 1: nothing of the truth is left
    assert not same(((1, 2), (1, 2)))  # sigma 0.94, ROLLOUT_STEPS' other start, still carries the truth
    assert not same(SF_STEPS)


def test_a_rollout_step_from_exported_weights(tmp_path: Path) -> None:
    assert STAGES.index("rollout") < STAGES.index("dmd")
    trainer = Trainer(MICRO, tmp_path / "run", torch.device("cpu"), seed=3)
    start_from_weights(trainer, _exported(tmp_path))
    before = trainer.nets.dit.head.head.weight.clone()
    parts = [trainer.step("rollout") for _ in range(4)]
    assert any("x0_mse" in p for p in parts)  # own-chain steps (the rest teacher forcing, as in sf)
    assert all(torch.isfinite(torch.tensor(p["loss"])) for p in parts)
    assert not torch.equal(before, trainer.nets.dit.head.head.weight)
    assert PROFILES["toy-rollout"].budgets["rollout"][0] > 0 and PROFILES["toy"].budgets["rollout"] == (0, 0)
