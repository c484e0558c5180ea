"""Wan VAE against the `vae` golden fixture, plus streaming exactness and state round trips."""

from __future__ import annotations

import copy
import fnmatch
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from dysink_cli.model.config import VAEConfig
from dysink_cli.model.vae import DecoderState, WanVAE
from tests.conftest import FIXTURES

FIXTURE = FIXTURES / "vae"



@pytest.fixture(scope="module")
def config() -> dict:
    return json.loads((FIXTURE / "config.json").read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, Tensor]:
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def vae(config: dict) -> WanVAE:
    ctor = config["model"]["constructor"]
    cfg = VAEConfig(
        dim=ctor["dim"],
        z_dim=ctor["z_dim"],
        dim_mult=tuple(ctor["dim_mult"]),
        num_res_blocks=ctor["num_res_blocks"],
        temperal_downsample=tuple(ctor["temperal_downsample"]),
        latent_mean=tuple(config["latent_mean"]),
        latent_std=tuple(config["latent_std"]),
    )
    model = WanVAE(cfg).eval()
    model.load_state_dict(load_file(FIXTURE / "weights.safetensors"), strict=True)
    return model


def _stream(vae: WanVAE, z: Tensor, sizes: list[int]) -> list[Tensor]:
    """Decode z chunk by chunk with one carried state; returns each chunk's frames."""
    state, parts, start = vae.decoder_state(), [], 0
    for n in sizes:
        frames, state = vae.decode_chunk(z[:, start : start + n], state)
        parts.append(frames)
        start += n
    assert start == z.shape[1]
    return parts


@pytest.fixture(scope="module")
def outputs(vae: WanVAE, io: dict[str, Tensor]) -> dict[str, Tensor]:
    z = io["latent"]
    return {
        "latent": vae.encode(io["video"]),
        "decoded_full": vae.decode(z),
        "decoded_streamed_per_frame": torch.cat(_stream(vae, z, [1] * z.shape[1]), dim=1),
        "decoded_streamed_chunks_1_3": torch.cat(_stream(vae, z, [1, 3]), dim=1),
        "decoded_block_1to3_standalone": vae.decode(z[:, 1:]),
    }


@pytest.mark.parametrize(
    "name",
    [
        "latent",
        "decoded_full",
        "decoded_streamed_per_frame",
        "decoded_streamed_chunks_1_3",
        "decoded_block_1to3_standalone",
    ],
)
def test_matches_fixture(name: str, outputs: dict, io: dict, config: dict) -> None:
    got, want = outputs[name], io[name]
    tol = next(v for k, v in config["tolerance"].items() if fnmatch.fnmatch(name, k))
    assert got.shape == want.shape and got.dtype == torch.float32
    err = (got - want).abs()
    assert bool((err <= tol["atol"] + tol["rtol"] * want.abs()).all()), f"max |err| {err.max():.3g}"


def test_streamed_decode_matches_whole_decode(outputs: dict) -> None:
    """Chunks are decoded as one call each after a lone first latent: the same math as the
    reference's latent-by-latent loop, up to fp32 rounding in the convolutions."""
    full = outputs["decoded_full"]
    torch.testing.assert_close(outputs["decoded_streamed_per_frame"], full, rtol=0, atol=1e-5)
    torch.testing.assert_close(outputs["decoded_streamed_chunks_1_3"], full, rtol=0, atol=1e-5)


def test_frame_counts(vae: WanVAE, io: dict) -> None:
    z = io["latent"]
    first, rest = _stream(vae, z, [1, 3])
    assert first.shape[1] == 1 and rest.shape[1] == 12  # fresh: 4T - 3, continued: 4T
    for t in (1, 2, 3):
        assert vae.decode(z[:, :t]).shape == (1, 4 * t - 3, 3, 32, 48)


def test_state_round_trip_mid_video(vae: WanVAE, io: dict, outputs: dict, tmp_path: Path) -> None:
    z = io["latent"]
    head, state = vae.decode_chunk(z[:, :2], vae.decoder_state())
    save_file(state.to_tensors(), tmp_path / "state.safetensors")
    resumed = DecoderState.from_tensors(load_file(tmp_path / "state.safetensors"))
    tail, _ = vae.decode_chunk(z[:, 2:], resumed)
    uninterrupted, _ = vae.decode_chunk(z[:, 2:], state)
    assert torch.equal(tail, uninterrupted)  # what resume needs: the saved state loses nothing
    torch.testing.assert_close(torch.cat([head, tail], dim=1), outputs["decoded_full"], rtol=0, atol=1e-5)


def test_state_after_first_latent_keeps_markers(vae: WanVAE, io: dict) -> None:
    fresh = vae.decoder_state()
    assert fresh.is_fresh and len(fresh.frames) == 32 and not any(fresh.first_chunk_seen.values())
    _, state = vae.decode_chunk(io["latent"][:, :1], fresh)
    assert fresh.is_fresh, "decode_chunk must not edit the state it was given"
    assert all(state.first_chunk_seen.values())
    assert all(state.frames[k] is None for k in state.first_chunk_seen)  # the 'Rep' stage
    tensors = state.to_tensors()
    again = DecoderState.from_tensors(tensors).to_tensors()
    assert tensors.keys() == again.keys()
    assert all(torch.equal(tensors[k], again[k]) for k in tensors)


def test_state_of_another_vae_is_rejected(vae: WanVAE, io: dict) -> None:
    other = WanVAE(VAEConfig(dim=4, num_res_blocks=1))
    with pytest.raises(ValueError, match="does not fit"):
        vae.decode_chunk(io["latent"][:, :1], other.decoder_state())


def test_bad_latents_are_rejected(vae: WanVAE, io: dict) -> None:
    with pytest.raises(ValueError, match="latents"):
        vae.decode(io["latent"].transpose(1, 2))


def test_bf16_close_to_float32_and_streams_exactly(vae: WanVAE, io: dict, outputs: dict) -> None:
    half = copy.deepcopy(vae).to(torch.bfloat16)
    z = io["latent"][:, :2]
    full = half.decode(z)
    assert full.dtype == torch.float32
    assert (full - outputs["decoded_full"][:, :5]).abs().max() < 0.15
    assert torch.equal(torch.cat(_stream(half, z, [1, 1]), dim=1), full)
    latent = half.encode(io["video"][:, :, :5])
    assert (latent - outputs["latent"][:, :2]).abs().max() < 0.1


def test_full_size_key_set_on_meta() -> None:
    with torch.device("meta"):
        vae = WanVAE(VAEConfig())
    state_dict = vae.state_dict()
    assert len(state_dict) == 194
    assert sum(t.numel() for t in state_dict.values()) == 126_892_531
    assert state_dict["decoder.upsamples.3.time_conv.weight"].shape == (768, 384, 3, 1, 1)
    assert len(vae.decoder_state().frames) == 32


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_nearest_2x_equals_interpolate_nearest_exact(channels_last: bool, dtype: torch.dtype) -> None:
    from dysink_cli.model.vae_blocks import nearest_2x

    x = torch.randn(3, 5, 4, 7).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    ref = torch.nn.functional.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").to(dtype)
    out = nearest_2x(x)
    assert out.shape == (3, 5, 8, 14) and torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.equal(out[:, :, 5, 3], x[:, :, 2, 1])


@pytest.mark.parametrize("channels_last", [False, True])
def test_interleave_halves_is_wan_upsample3d_frame_order(channels_last: bool) -> None:
    from dysink_cli.model.vae_blocks import interleave_halves

    y = torch.randn(2, 6, 4, 5, 7)
    if channels_last:
        y = y.contiguous(memory_format=torch.channels_last_3d)
    # the reference: x.view(b, 2, c, t, h, w), stack on a new axis after time, reshape
    b, c2, t, h, w = y.shape
    ref = y.reshape(b, 2, c2 // 2, t, h, w)
    ref = torch.stack((ref[:, 0], ref[:, 1]), 3).reshape(b, c2 // 2, 2 * t, h, w)
    out = interleave_halves(y)
    assert torch.equal(out, ref)
    assert out.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
    assert torch.equal(out[:, :, 2 * 1 + 1], y[:, c2 // 2 :, 1])  # half 1 of step 1 is frame 3


@pytest.mark.parametrize("frames", [1, 3, 12])
def test_norm_silu_step_equals_norm_then_cached_conv(frames: int) -> None:
    """The residual blocks' fused step (norm chain written after the cached frames) gives the
    values and slot of Wan's order: SiLU(RMS_norm(x)), then the cached causal conv."""
    from dysink_cli.model.vae_blocks import CausalHead, causal_step, norm_silu_step
    from dysink_cli.model.vae_chains import EAGER, rms_norm_silu

    torch.manual_seed(0)
    head = CausalHead(8, 5)
    torch.nn.init.normal_(head[0].gamma, 1.0, 0.3)
    x = torch.randn(1, 8, frames, 6, 7)
    for prev in (None, torch.randn(1, 8, 1, 6, 7), torch.randn(1, 8, 2, 6, 7)):
        got, got_slot = norm_silu_step(EAGER, head[0], head[2], x, prev)
        want, want_slot = causal_step(head[2], rms_norm_silu(x, head[0].gamma, head[0].scale), prev)
        assert torch.equal(got, want) and torch.equal(got_slot, want_slot)


def _bias_added_apart(module: torch.nn.Module) -> list[bool]:
    """Every conv of `module` adds its bias in a second op rounded to the output dtype, as PyTorch
    does after a cuDNN convolution (the CPU kernels add it inside, with other roundings). Returns
    the list each call appends to: whether the conv was asked for its bias."""
    asked: list[bool] = []
    for conv in module.modules():
        if isinstance(conv, torch.nn.Conv3d) and conv.bias is not None:
            plain = conv._conv_forward

            def apart(x: Tensor, weight: Tensor, bias: Tensor | None, plain=plain) -> Tensor:
                asked.append(bias is not None)
                y = plain(x, weight, None)
                return y if bias is None else y + bias.reshape(-1, 1, 1, 1)

            conv._conv_forward = apart
    return asked


@pytest.mark.parametrize("dims", [(8, 8), (8, 6)])
def test_residual_block_with_folded_biases_gives_the_same_values(dims: tuple[int, int]) -> None:
    """With `fold_biases` a residual block's two convs leave their bias to the next pass (the norm
    chain, the residual sum); in bfloat16 its outputs and slots equal those of the separate bias
    adds, over a stream of chunks (first call, short and full caches)."""
    from dataclasses import replace

    from dysink_cli.model.vae_blocks import ResidualBlock
    from dysink_cli.model.vae_chains import EAGER

    torch.manual_seed(1)
    block = ResidualBlock(*dims).to(torch.bfloat16)
    for norm in (block.residual[0], block.residual[3]):
        torch.nn.init.normal_(norm.gamma, 1.0, 0.3)
    for conv in (block.residual[2], block.residual[6]):
        torch.nn.init.normal_(conv.bias, 0.0, 1.0)
    folded = copy.deepcopy(block)
    folded.chains = replace(EAGER, fold_biases=True)
    asked, folded_asked = _bias_added_apart(block), _bias_added_apart(folded)
    slots = (None, None)
    folded_slots = (None, None)
    for frames in (1, 3, 3):
        x = torch.randn(1, dims[0], frames, 5, 6, dtype=torch.bfloat16)
        want, slots = block(x, slots)
        got, folded_slots = folded(x, folded_slots)
        assert torch.equal(got, want)
        assert all(torch.equal(a, b) for a, b in zip(folded_slots, slots, strict=True))
    shortcut_calls = 3 if dims[0] != dims[1] else 0  # the 1x1 shortcut keeps its bias
    assert folded_asked.count(False) == 6 and folded_asked.count(True) == shortcut_calls
    assert asked.count(False) == 0
    bias_free = copy.deepcopy(block)
    torch.nn.init.zeros_(bias_free.residual[6].bias)
    assert not torch.equal(bias_free(x, slots)[0], want), "the second conv's bias must count"


def test_decoder_with_folded_biases_streams_the_same_frames() -> None:
    """A whole bfloat16 decoder (residual blocks with and without a shortcut conv, the head, the
    upsamplers) streams the same frames with the biases folded as with cuDNN's separate adds."""
    from dataclasses import replace

    from dysink_cli.model.vae_chains import EAGER

    torch.manual_seed(4)
    vae = WanVAE(VAEConfig(dim=8)).to(torch.bfloat16)
    for conv in vae.modules():
        if isinstance(conv, torch.nn.Conv3d) and conv.bias is not None:
            torch.nn.init.normal_(conv.bias, 0.0, 0.5)
    _bias_added_apart(vae)
    z = torch.randn(1, 7, 16, 6, 8, dtype=torch.bfloat16)
    want = torch.cat(_stream(vae, z, [1, 3, 3]), dim=1)
    folded = replace(EAGER, fold_biases=True)
    for module in vae.modules():
        if hasattr(module, "chains"):
            module.chains = folded
    assert torch.equal(torch.cat(_stream(vae, z, [1, 3, 3]), dim=1), want)


def test_folding_a_bias_needs_a_three_frame_conv() -> None:
    """A 1-frame conv has no padded pass to carry a bias: asked to, the step says so."""
    from dysink_cli.model.vae_blocks import CausalConv3d, RMS_norm, norm_silu_step
    from dysink_cli.model.vae_chains import EAGER

    conv, x = CausalConv3d(4, 4, 1), torch.randn(1, 4, 2, 3, 3)
    with pytest.raises(ValueError, match="2 front frames, not 0"):
        norm_silu_step(EAGER, RMS_norm(4, images=False), conv, x, None, bias_out=False)


@pytest.mark.gpu
def test_compiled_fused_cache_decode_equals_unfused_on_cuda(vae: WanVAE, io: dict) -> None:
    """On CUDA the decoder's compiled norm chains write after the cached frames in one pass (the
    default: biases not folded, bench/RESULTS.md); the frames equal those of the compiled chains
    followed by a separate concatenation."""
    from dataclasses import replace

    from dysink_cli.model import vae_chains

    def run(fuse: bool) -> Tensor:
        model = copy.deepcopy(vae).cuda().to(torch.bfloat16)
        model.use_channels_last()
        model.use_compiled_ops()
        if not fuse:
            unfused = torch.compile(vae_chains.rms_norm_silu, dynamic=True)
            after = lambda f, x, g, s: torch.cat([f, unfused(x, g, s)], dim=2)  # noqa: E731
            chains = replace(model.decoder.head.chains, norm_silu=unfused, norm_silu_after=after)
            for module in model.modules():
                if hasattr(module, "chains"):
                    module.chains = chains
        z = io["latent"].cuda()
        return torch.cat(_stream(model, z, [1, z.shape[1] - 1]), dim=1)

    fused, unfused = run(True), run(False)
    assert torch.equal(fused, unfused), f"max |diff| {(fused - unfused).abs().max().item():.3g}"


def test_round_to_bf16_matches_the_cast() -> None:
    """The bit-level rounding equals a cast to bfloat16 and back: ties to even, both signs, the
    largest finite values and overflow to infinity."""
    from dysink_cli.model.vae_chains import round_to_bf16

    torch.manual_seed(2)
    edge = [1.00390625, 1.01171875, -1.00390625, -1.01171875, 3.3e38, -3.3e38, 3.4e38, 0.0, -0.0, 1e-40]
    v = torch.cat([torch.randn(50_000) * 1e3, torch.randn(50_000) * 1e-3, torch.tensor(edge)])
    assert torch.equal(round_to_bf16(v), v.to(torch.bfloat16).float())


@pytest.mark.slow
def test_compiled_chains_fold_biases_exactly() -> None:
    """Under torch.compile (CPU backend here; the render compiles them on CUDA) the folded chains
    round the bias add where a separate add rounds: the same bfloat16 values as adding apart."""
    from dysink_cli.model.vae_chains import compiled_chains

    torch.manual_seed(3)
    x, shortcut = (torch.randn(1, 16, 3, 8, 9, dtype=torch.bfloat16) * 3 for _ in range(2))
    bias, gamma = torch.randn(16, dtype=torch.bfloat16), torch.randn(16, 1, 1, 1, dtype=torch.bfloat16)
    front = torch.randn(1, 16, 2, 8, 9, dtype=torch.bfloat16)
    added = x + bias.reshape(-1, 1, 1, 1)
    chains = compiled_chains(fold_biases=True)
    assert torch.equal(chains.residual_sum(x, bias, shortcut), added + shortcut)
    folded = chains.norm_silu_after_biased(front, x, bias, gamma, 4.0)
    assert torch.equal(folded, chains.norm_silu_after(front, added, gamma, 4.0))
