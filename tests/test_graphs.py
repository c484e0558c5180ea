"""CUDA graphs of the block loop (engine/graphs.py) and the compiled kernels against eager runs."""

from __future__ import annotations

import pytest
import torch
from engine_helpers import next_block

from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.tiny import TINY_DIT, TINY_VAE, init_untrained
from dysink_cli.model.vae import WanVAE

pytestmark = pytest.mark.gpu  # run on a CUDA machine: make test-gpu

SPECS = {
    "window": LoopSpec(policy="window", window_frames=9, capacity_frames=9),
    "static-sink": LoopSpec(policy="static-sink", window_frames=9, sink_frames=3, capacity_frames=9),
    "dysink": LoopSpec(policy="dysink", window_frames=6, capacity_frames=12, top_k=2, gate_threshold=0.5),
}



def rollout(spec: LoopSpec, graphs: bool, compiled: bool, blocks: int = 10) -> tuple[list, BlockGenerator]:
    dit = init_untrained(WanDiT(TINY_DIT).cuda(), 0).to(torch.bfloat16).eval()
    if compiled:
        dit.use_compiled_ops()
    gen = BlockGenerator(
        dit, spec, SeededNoise(3), (8, 8), device="cuda", dtype=torch.bfloat16, backend="cudnn",
        graphs=graphs,
    )  # fmt: skip
    text = torch.randn(1, 4, TINY_DIT.text_dim, generator=torch.Generator().manual_seed(1)).cuda()
    gen.set_prompt(dit.encode_text(text))
    outs = [next_block(gen) for _ in range(blocks)]
    return outs, gen


@pytest.mark.parametrize("policy", ["window", "static-sink"])
def test_replayed_graphs_equal_eager_bit_for_bit(policy: str) -> None:
    eager, _ = rollout(SPECS[policy], graphs=False, compiled=False)
    graphed, gen = rollout(SPECS[policy], graphs=True, compiled=False)
    assert gen.graphs is not None and gen.graphs.replays >= 20  # steady state: every call replays
    for a, b in zip(eager, graphed, strict=True):
        assert torch.equal(a.latents, b.latents)


def test_dysink_graphs_with_the_sync_free_gate_track_eager() -> None:
    eager, _ = rollout(SPECS["dysink"], graphs=False, compiled=False)
    graphed, gen = rollout(SPECS["dysink"], graphs=True, compiled=True)
    assert gen.graphs is not None and gen.graphs.replays >= 20
    dropped = 0
    for a, b in zip(eager, graphed, strict=True):
        err = (a.latents.float() - b.latents.float()).norm() / a.latents.float().norm()
        assert err < 3e-2, f"block {a.index}: relative error {err:.3g}"
        ga, gb = a.record["gate"], b.record["gate"]
        assert [g["layer"] for g in ga] == [g["layer"] for g in gb]
        dropped += sum(e["gated_off"] for g in gb for e in g["entries"])
    assert dropped > 0  # the gate dropped entries inside the graphs


def test_compiled_vae_decode_matches_eager() -> None:
    vae = init_untrained(WanVAE(TINY_VAE).cuda(), 2).to(torch.bfloat16).eval()
    z = torch.randn(1, 3, TINY_VAE.z_dim, 8, 8, generator=torch.Generator().manual_seed(4)).cuda()
    eager = vae.decode(z)
    vae.use_compiled_ops()
    compiled = vae.decode(z)
    err = (compiled - eager).norm() / eager.norm()
    assert compiled.shape == eager.shape and err < 2e-2, f"relative error {err:.3g}"


class KeepFrames:
    """A sink that keeps every frame (the GPU box has no ffmpeg)."""

    kept: list[torch.Tensor] = []

    def __init__(self, path, width: int, height: int, fps: int, **_) -> None:
        self.frames_written = 0

    def __enter__(self) -> KeepFrames:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def write(self, frames) -> None:
        KeepFrames.kept.append(torch.as_tensor(frames).clone())
        self.frames_written += frames.shape[0]


@pytest.mark.parametrize("policy", ["static-sink", "dysink"])
def test_overlapped_decode_gives_the_same_frames(tmp_path, policy: str) -> None:
    from dysink_cli.config import resolve_config
    from dysink_cli.render.job import RenderJob
    from dysink_cli.render.session import render
    from dysink_cli.timeline import Segment

    videos = []
    for overlap in ("true", "false"):
        sink = 3 if policy == "static-sink" else 0
        sets = [f'engine.policy="{policy}"', f"engine.sink_frames={sink}", f"model.overlap_decode={overlap}"]
        job = RenderJob(
            segments=(Segment(0.0, "a fox"),),
            seconds=4.0,
            output=tmp_path / f"{overlap}.mp4",
            config=resolve_config("tiny", sets),
            seed=3,
            device="cuda",
            overwrite=True,
        )
        KeepFrames.kept = []
        render(job, lambda e: None, sink_factory=KeepFrames)
        videos.append(torch.cat(KeepFrames.kept))
    assert videos[0].shape[0] > 60 and torch.equal(videos[0], videos[1])


def test_channels_last_vae_decode_matches() -> None:
    vae = init_untrained(WanVAE(TINY_VAE).cuda(), 2).to(torch.bfloat16).eval()
    z = torch.randn(1, 6, TINY_VAE.z_dim, 8, 8, generator=torch.Generator().manual_seed(4)).cuda()
    first, state = vae.decode_chunk(z[:, :3], vae.decoder_state())
    want = torch.cat([first, vae.decode_chunk(z[:, 3:], state)[0]], dim=1)
    vae.use_channels_last()
    first, state = vae.decode_chunk(z[:, :3], vae.decoder_state())
    slot = state.frames["middle.0.residual.2"]
    assert slot is not None and slot.is_contiguous(memory_format=torch.channels_last_3d)
    got = torch.cat([first, vae.decode_chunk(z[:, 3:], state)[0]], dim=1)
    err = (got - want).norm() / want.norm()
    assert err < 2e-2, f"relative error {err:.3g}"
