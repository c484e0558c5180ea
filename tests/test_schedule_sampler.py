"""Warped 4-step schedule, sigma lookup, x0 conversion and re-noising: hand-checkable values."""

from __future__ import annotations

import torch

from dysink_cli.engine.sampler import flow_to_x0, renoise
from dysink_cli.engine.schedule import denoising_timesteps, sigma_of, training_sigmas


def test_warped_timesteps_match_the_reference_float32_values():
    t = denoising_timesteps((1000, 750, 500, 250), shift=5.0, warp=True)
    assert t.dtype == torch.float32
    assert t.tolist() == [1000.0, 937.5, 833.3333129882812, 625.0]


def test_unwarped_steps_are_the_raw_values():
    assert denoising_timesteps((1000, 750, 500, 250), 5.0, warp=False).tolist() == [1000, 750, 500, 250]


def test_shifted_sigmas():
    s = training_sigmas(5.0)
    assert s[0].item() == 1.0
    # s = 0.5 -> 5*0.5 / (1 + 4*0.5) = 0.8333...
    assert abs(s[500].item() - 2.5 / 3.0) < 1e-6
    assert sigma_of(625.0, 5.0).item() == 0.625
    assert abs(sigma_of(0.0, 5.0).item() - 0.00498) < 1e-4  # the clean pass maps to index 999


def test_flow_to_x0_and_renoise():
    x = torch.tensor([1.0, 2.0])
    v = torch.tensor([0.5, -1.0])
    assert flow_to_x0(x, v, torch.tensor(0.5)).tolist() == [0.75, 2.5]
    x0, eps = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    assert renoise(x0, eps, torch.tensor(0.25)).tolist() == [0.75, 0.5]
