"""FP8 linears (model/fp8.py): the quantisation, the product, and the DiT with it on and off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dysink_cli.config import resolve_config
from dysink_cli.errors import ConfigError
from dysink_cli.model.config import DiTConfig
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.fp8 import FP8, FP8_MAX, fp8_linear, quantize_rows, use_fp8
from dysink_cli.model.rope import wan_frequencies
from dysink_cli.model.tiny import init_untrained
from dysink_cli.toy.dit_context import dit_call


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_rows_quantise_to_e4m3_with_one_scale_each() -> None:
    x = torch.randn(5, 64) * torch.tensor([1e-3, 1.0, 30.0, 1e4, 0.0])[:, None]
    q, scale = quantize_rows(x)
    assert q.dtype == FP8 and scale.shape == (5,) and torch.isfinite(scale).all()
    assert torch.allclose(q.float().abs().amax(1)[:4], torch.full((4,), FP8_MAX))  # each row spans e4m3
    back = q.float() * scale[:, None]
    for row in range(4):  # e4m3 keeps 3 mantissa bits: within 1/16 relative where it matters
        assert _rel(back[row], x[row]) < 1 / 16
    assert back[4].abs().max() == 0


def test_fp8_linear_is_the_product_of_the_quantised_operands() -> None:
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, generator=gen) for s in ((2, 7, 96), (48, 96), (48,)))
    wq, ws = quantize_rows(w)
    y = fp8_linear(x, wq, ws, b)
    xq, xs = quantize_rows(x.reshape(-1, 96))
    want = (xq.float() * xs[:, None]) @ (wq.float() * ws[:, None]).t() + b
    assert y.shape == (2, 7, 48) and torch.allclose(y.reshape(-1, 48), want, atol=1e-5)
    assert 0.005 < _rel(y, F.linear(x, w, b)) < 0.08  # quantised, and close to the exact product


def test_the_dit_runs_its_block_linears_in_fp8_and_back() -> None:
    cfg = DiTConfig(dim=64, ffn_dim=128, freq_dim=32, num_heads=2, num_layers=2, text_dim=16, text_len=8)
    dit = init_untrained(WanDiT(cfg), 3).eval()
    freqs = wan_frequencies(cfg.head_dim, cfg.rope_theta)
    x, t = torch.randn(1, 3, 16, 4, 4), torch.tensor([500.0])
    text = dit.encode_text(torch.randn(1, 8, 16))

    def flow() -> torch.Tensor:
        with torch.no_grad():
            return dit_call(dit, x, t, text, torch.tensor([0]), freqs)[0]

    exact = flow()
    assert use_fp8(dit.blocks) == cfg.num_layers * 10  # q, k, v, o twice, and the FFN's two
    quantised = flow()
    assert 0 < _rel(quantised, exact) < 0.1
    use_fp8(dit.blocks, on=False)
    assert torch.equal(flow(), exact)


def test_model_fp8_is_a_checked_setting() -> None:
    assert resolve_config("dysink", ("model.fp8=true",)).model.fp8
    assert not resolve_config("dysink", ()).model.fp8
    with pytest.raises(ConfigError):
        resolve_config("dysink", ('model.fp8="yes"',))
