"""TAEHV (taew2_1) against the `decoders/taehv` golden fixture, plus streaming and state round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from dysink_cli.model.taehv import LIGHTTAEW2_1, TAEHV, TAEW2_1, TAEHVConfig, TAEHVState
from tests.conftest import SHARED_FIXTURES

TAEHV_FIXTURE = SHARED_FIXTURES / "decoders" / "taehv"


def fixture_dir() -> Path:
    """The TAEHV fixture stays in ../shared/fixtures (its 22.6 MB of release-layout weights are
    not vendored: see tests/fixtures/README.md); CI and every dev machine have that folder."""
    if not TAEHV_FIXTURE.is_dir():
        pytest.skip(f"the TAEHV fixture is not vendored and {TAEHV_FIXTURE} is absent")
    return TAEHV_FIXTURE


@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((fixture_dir() / "config.json").read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, Tensor]:
    return load_file(fixture_dir() / "io.safetensors")


@pytest.fixture(scope="module")
def weights() -> dict[str, Tensor]:
    return {k: v.float() for k, v in load_file(fixture_dir() / "weights.safetensors").items()}


def _build(weights: dict[str, Tensor], cfg: TAEHVConfig = TAEW2_1) -> TAEHV:
    model = TAEHV(cfg).eval()
    model.load_state_dict(weights, strict=True)
    return model


@pytest.fixture(scope="module")
def taehv(weights: dict[str, Tensor]) -> TAEHV:
    return _build(weights)


def _close(got: Tensor, want: Tensor, tol: dict) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=tol["atol"], rtol=tol["rtol"])


def _stream(model: TAEHV, latents: Tensor, per_call: int, state: TAEHVState | None = None) -> Tensor:
    state = state or model.decoder_state()
    parts = []
    for start in range(0, latents.shape[1], per_call):
        frames, state = model.decode_chunk(latents[:, start : start + per_call], state)
        parts.append(frames)
    return torch.cat(parts, 1)


def test_keys_match_checkpoint(taehv: TAEHV, weights: dict[str, Tensor]) -> None:
    assert set(taehv.state_dict()) == set(weights)
    assert len(weights) == 128


@pytest.mark.parametrize("change", ["missing", "extra"])
def test_strict_load_rejects_key_mismatch(weights: dict[str, Tensor], change: str) -> None:
    bad = dict(weights)
    if change == "missing":
        del bad["decoder.15.conv.2.bias"]
    else:
        bad["decoder.23.weight"] = torch.zeros(3)
    with pytest.raises(RuntimeError, match="Missing key" if change == "missing" else "Unexpected key"):
        TAEHV(TAEW2_1).load_state_dict(bad, strict=True)


def test_decoded_full(taehv: TAEHV, io: dict[str, Tensor], config: dict) -> None:
    latents = io["taehv_latents"]
    frames = taehv.decode(latents)
    assert frames.shape[1] == 4 * latents.shape[1] - 3
    _close(frames, io["decoded_full"], config["tolerance"]["decoded_*"])


def test_decoded_streamed_blocks(taehv: TAEHV, io: dict[str, Tensor], config: dict) -> None:
    streamed = _stream(taehv, io["taehv_latents"], 3)
    _close(streamed, io["decoded_streamed_blocks"], config["tolerance"]["decoded_*"])
    torch.testing.assert_close(streamed, taehv.decode(io["taehv_latents"]), atol=1e-6, rtol=1e-6)


def test_decoded_preview_half(weights: dict[str, Tensor], io: dict[str, Tensor], config: dict) -> None:
    model = _build(weights, dataclasses.replace(TAEW2_1, decoder_space_upscale=(True, True, False)))
    _close(model.decode(io["taehv_latents"]), io["decoded_preview_half"], config["tolerance"]["decoded_*"])


def test_encoded(taehv: TAEHV, io: dict[str, Tensor], config: dict) -> None:
    _close(taehv.encode(io["taehv_frames"]), io["encoded"], config["tolerance"]["encoded"])


def test_encode_rejects_partial_group(taehv: TAEHV, io: dict[str, Tensor]) -> None:
    with pytest.raises(ValueError, match="multiple of 4"):
        taehv.encode(io["taehv_frames"][:, :10])


def test_state_round_trip_mid_stream(taehv: TAEHV, io: dict[str, Tensor], tmp_path: Path) -> None:
    latents = io["taehv_latents"]
    first, state = taehv.decode_chunk(latents[:, :3], taehv.decoder_state())
    assert first.shape[1] == 9 and state.trimmed
    save_file(state.to_tensors(), tmp_path / "state.safetensors")
    restored = TAEHVState.from_tensors(load_file(tmp_path / "state.safetensors"))
    assert restored.trimmed and set(restored.memory) == set(state.memory)
    want = _stream(taehv, latents[:, 3:], 3, state)
    got = _stream(taehv, latents[:, 3:], 3, restored)
    assert got.shape[1] == 4 * 6
    assert torch.equal(got, want)


def test_fresh_state_round_trip(taehv: TAEHV) -> None:
    fresh = TAEHVState.from_tensors(taehv.decoder_state().to_tensors())
    assert not fresh.trimmed and all(v is None for v in fresh.memory.values())
    with pytest.raises(ValueError, match="not a TAEHV state"):
        TAEHVState.from_tensors({"trimmed": torch.tensor(True), "frames.3": torch.zeros(1)})


def test_time_upscale_disabled_keeps_last_tgrow_channels(weights: dict[str, Tensor]) -> None:
    cfg = dataclasses.replace(TAEW2_1, decoder_time_upscale=(False, False, True))
    model = _build(weights, cfg)
    assert torch.equal(model.decoder[13].conv.weight, weights["decoder.13.conv.weight"][-128:])
    assert model.fit_state_dict(weights)["decoder.13.conv.weight"].shape == (128, 128, 1, 1)
    assert model.decode(torch.randn(1, 3, 16, 2, 3)).shape == (1, 2 * 3 - 1, 3, 16, 24)


def test_lighttaew2_1_unnormalises(weights: dict[str, Tensor], taehv: TAEHV) -> None:
    light = _build(weights, LIGHTTAEW2_1)
    latents = torch.randn(1, 2, 16, 2, 3, generator=torch.Generator().manual_seed(0))
    mean, std = (torch.tensor(v).view(1, 1, -1, 1, 1) for v in (TAEW2_1.latent_mean, TAEW2_1.latent_std))
    torch.testing.assert_close(light.decode(latents), taehv.decode(latents * std + mean))


def test_channels_last_matches(weights: dict[str, Tensor], io: dict[str, Tensor], taehv: TAEHV) -> None:
    model = _build(weights)
    model.use_channels_last()
    streamed = _stream(model, io["taehv_latents"], 3)
    assert streamed.is_contiguous()
    torch.testing.assert_close(streamed, taehv.decode(io["taehv_latents"]), atol=1e-5, rtol=1e-5)


def test_config_rejects_mismatched_flags() -> None:
    from dysink_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="decoder_time_upscale"):
        TAEHVConfig(decoder_time_upscale=(True, True))
