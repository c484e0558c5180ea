"""PE-Core vision tower and block descriptors against the DySink fixtures; layout; 2-D RoPE."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from dysink_cli.engine.memory.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.errors import ConfigError
from dysink_cli.model.config import PE_CORE_CONFIGS, PECoreConfig
from dysink_cli.model.pe_core import PECoreVision, apply_rope2d, rope2d_angles
from tests.conftest import FIXTURES


def _fixture_encoder(name: str) -> tuple[PECoreVision, dict[str, torch.Tensor], dict]:
    folder = FIXTURES / name
    assert folder.is_dir(), f"fixtures not found at {folder}"
    meta = json.loads((folder / "config.json").read_text())
    ctor = meta["memory_encoder"]["constructor"]
    config = PECoreConfig(
        image_size=ctor["image_size"],
        patch_size=ctor["patch_size"],
        width=ctor["width"],
        layers=ctor["layers"],
        heads=ctor["heads"],
        mlp_ratio=ctor["mlp_ratio"],
        output_dim=ctor["output_dim"],
        attn_pooler_heads=ctor["attn_pooler_heads"],
    )
    encoder = PECoreVision(config).eval()
    encoder.load_state_dict(load_file(folder / "pe_weights.safetensors"), strict=True)
    return encoder, load_file(folder / "io.safetensors"), meta["tolerance"]["descriptors"]


@pytest.mark.parametrize("fixture", ["dysink_rollout", "interactive_switch"])
def test_descriptors_match_fixture(fixture):
    encoder, io, _ = _fixture_encoder(fixture)
    frames = io["decoded_block_frames"]  # (blocks, 1, 9, 3, H, W)
    for block in range(frames.shape[0]):
        got = describe_frames(frames[block, 0], encoder)
        torch.testing.assert_close(got, io["descriptors"][block], atol=1e-4, rtol=1e-4)
        assert got.dtype == torch.float32
        assert math.isclose(got.norm().item(), 1.0, rel_tol=1e-6)


def test_frames_for_descriptor_range():
    decoded = torch.tensor([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 2, 3)
    out = frames_for_descriptor(decoded)
    assert out.flatten().tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0]
    assert out.shape == decoded.shape


def _pe_keys(layers: int) -> set[str]:
    keys = {"class_embedding", "positional_embedding", "proj", "conv1.weight"}
    keys |= {f"{m}.{p}" for m in ("ln_pre", "ln_post") for p in ("weight", "bias")}
    pool = "attn_pool."
    keys |= {f"{pool}probe", f"{pool}attn.in_proj_weight", f"{pool}attn.in_proj_bias"}
    for mod in ("attn.out_proj", "layernorm", "mlp.c_fc", "mlp.c_proj"):
        keys |= {f"{pool}{mod}.weight", f"{pool}{mod}.bias"}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        keys |= {f"{p}attn.in_proj_weight", f"{p}attn.in_proj_bias"}
        for mod in ("attn.out_proj", "ln_1", "ln_2", "mlp.c_fc", "mlp.c_proj"):
            keys |= {f"{p}{mod}.weight", f"{p}{mod}.bias"}
    return keys


def test_s16_384_layout_on_meta():
    with torch.device("meta"):
        encoder = PECoreVision(PE_CORE_CONFIGS["PE-Core-S16-384"])
    state = encoder.state_dict()
    assert len(state) == 163
    assert sum(t.numel() for t in state.values()) == 23_782_656
    assert set(state) == _pe_keys(12)
    assert state["positional_embedding"].shape == (577, 384)
    assert state["proj"].shape == (384, 512)
    assert state["attn_pool.probe"].shape == (1, 1, 384)
    assert state["transformer.resblocks.11.attn.in_proj_weight"].shape == (1152, 384)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("PE-Core-T16-384", 6_140_544),
        ("PE-Core-B16-224", 93_672_960),
        ("PE-Core-L14-336", 317_151_232),
    ],
)
def test_other_core_sizes_on_meta(name, params):
    with torch.device("meta"):
        encoder = PECoreVision(PE_CORE_CONFIGS[name])
    assert sum(p.numel() for p in encoder.parameters()) == params


def test_rope2d_angles_2x2_by_hand():
    # head_dim 8: r = 2 frequencies, theta_0 = 1, theta_1 = 10000^(-1/2) = 0.01.
    a = 0.01
    expected = torch.tensor(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],  # CLS
            [1, 1, a, a, 1, 1, a, a],  # row 0, col 0
            [2, 2, 2 * a, 2 * a, 1, 1, a, a],  # row 0, col 1
            [1, 1, a, a, 2, 2, 2 * a, 2 * a],  # row 1, col 0
            [2, 2, 2 * a, 2 * a, 2, 2, 2 * a, 2 * a],  # row 1, col 1
        ],
        dtype=torch.float32,
    )
    got = rope2d_angles(2, 2, head_dim=8)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-7, rtol=1e-6)


def test_apply_rope2d_rotates_adjacent_pairs():
    angles = rope2d_angles(2, 2, head_dim=8)  # (5, 8)
    x = torch.zeros(5, 8)
    x[0, 0] = 1.0  # CLS: identity
    x[2, 0] = 1.0  # row 0, col 1: dims 0-1 rotate by 2
    x[3, 5] = 1.0  # row 1, col 0: dims 4-5 rotate by 2, e_5 -> (-sin, cos)
    x[4, 2], x[4, 3] = 3.0, 4.0  # row 1, col 1: pair (3, 4) by 0.02
    out = apply_rope2d(x, angles)
    c, s = math.cos(2.0), math.sin(2.0)
    c2, s2 = math.cos(0.02), math.sin(0.02)
    expected = torch.zeros(5, 8)
    expected[0, 0] = 1.0
    expected[2, 0], expected[2, 1] = c, s
    expected[3, 4], expected[3, 5] = -s, c
    expected[4, 2], expected[4, 3] = 3 * c2 - 4 * s2, 4 * c2 + 3 * s2
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)


def test_forward_rejects_wrong_size():
    encoder = PECoreVision(PECoreConfig(image_size=16, patch_size=8, width=16, layers=1, heads=1))
    with pytest.raises(ValueError, match="16, 16"):
        encoder(torch.zeros(1, 3, 24, 24))
    assert encoder(torch.zeros(2, 3, 16, 16)).shape == (2, 512)


def test_head_dim_must_allow_2d_rope():
    with pytest.raises(ConfigError, match="divisible by 4"):
        PECoreVision(PECoreConfig(image_size=16, patch_size=8, width=12, layers=1, heads=2))
