"""3-axis RoPE: split, frequencies, adjacent-pair rotation, unbounded positions, LoL jitter."""

from __future__ import annotations

import math

import torch

from dysink_cli.config import resolve_config
from dysink_cli.model.config import WAN_1_3B
from dysink_cli.model.rope import (
    RopeTable,
    apply_rope,
    axis_frequencies,
    lol_frequencies,
    rope_angles,
    split_pairs,
    wan_frequencies,
)
from dysink_cli.render.assemble import render_rope


def test_split_is_22_21_21_at_head_dim_128():
    assert split_pairs(128) == (22, 21, 21)
    assert split_pairs(16) == (4, 2, 2)


def test_axis_frequencies_formula():
    f = axis_frequencies(44)
    assert f.dtype == torch.float64
    assert f[0].item() == 1.0
    assert math.isclose(f[1].item(), 10000 ** (-2 / 44), rel_tol=1e-15)


def test_angles_order_time_then_rows_then_cols():
    freqs = wan_frequencies(16)  # pairs 4 / 2 / 2
    a = rope_angles(freqs, torch.tensor([5.0]), 2, 3)[0]  # (6 tokens, 8 pairs)
    token = 1 * 3 + 2  # row 1, col 2
    assert torch.equal(a[token, :4], 5.0 * freqs.temporal[0])
    assert torch.equal(a[token, 4:6], 1.0 * freqs.height[0])
    assert torch.equal(a[token, 6:8], 2.0 * freqs.width[0])


def test_apply_rope_rotates_adjacent_pairs():
    x = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    x[..., 0] = 1.0
    table = RopeTable.from_angles(torch.full((1, 1, 1), math.pi / 2, dtype=torch.float64))
    out = apply_rope(x, table)
    assert torch.allclose(out, torch.tensor([[[[0.0, 1.0]]]], dtype=torch.float64), atol=1e-12)


def test_positions_beyond_the_1024_table_and_relative_invariance():
    """q.k depends only on the temporal distance, at frame 10 and at frame 15,000 alike."""
    freqs = wan_frequencies(128)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 1, 128, generator=g, dtype=torch.float64)
    k = torch.randn(1, 1, 1, 128, generator=g, dtype=torch.float64)

    def dot(pq: int, pk: int) -> float:
        tq = RopeTable.from_angles(rope_angles(freqs, torch.tensor([pq]), 1, 1))
        tk = RopeTable.from_angles(rope_angles(freqs, torch.tensor([pk]), 1, 1))
        return (apply_rope(q, tq) * apply_rope(k, tk)).sum().item()

    assert math.isclose(dot(10, 3), dot(15_000, 14_993), rel_tol=1e-9)


def test_lol_sigma_zero_is_plain_rope_exactly():
    plain = wan_frequencies(WAN_1_3B.head_dim)
    zero = lol_frequencies(WAN_1_3B, 0.0, torch.Generator().manual_seed(7))
    assert torch.equal(zero.temporal, plain.temporal) and torch.equal(zero.height, plain.height)


def test_lol_per_head_frequencies_follow_the_formula():
    sigma = 0.8
    freqs = lol_frequencies(WAN_1_3B, sigma, torch.Generator().manual_seed(7))
    assert freqs.temporal.shape == (12, 22)
    theta_h = 1.0 / freqs.temporal[:, 1] ** (44 / 2)  # omega_1 = theta_h^(-2/44)
    assert torch.all(theta_h >= 10000 * (1 - sigma) - 1e-6) and torch.all(
        theta_h <= 10000 * (1 + sigma) + 1e-6
    )
    assert len(set(theta_h.round().tolist())) == 12  # every head its own base
    assert torch.equal(freqs.temporal[:, 0], torch.ones(12, dtype=torch.float64))  # omega_0 = 1 for all heads
    assert torch.equal(freqs.height, wan_frequencies(128).height)  # temporal axis only (default)


def test_lol_jitter_is_a_function_of_the_seed():
    a, b, c = (lol_frequencies(WAN_1_3B, 0.8, torch.Generator().manual_seed(s)).temporal for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    cfg = resolve_config("tiny", ["rope.jitter=0.8", "rope.jitter_scope=per_layer"])
    per_layer = render_rope(cfg, WAN_1_3B, seed=7)
    assert isinstance(per_layer, list) and len(per_layer) == 30
    assert not torch.equal(per_layer[0].temporal, per_layer[1].temporal)
