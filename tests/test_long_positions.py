"""Positions without a ceiling: relative RoPE equals absolute under the clamp, and an hour-long
(15,000 latent frame) rollout runs with finite outputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from engine_helpers import next_block

from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.model.config import DiTConfig
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.tiny import TINY_DIT, init_untrained

MICRO = DiTConfig(dim=16, ffn_dim=32, num_heads=2, num_layers=1, text_dim=8, text_len=8, freq_dim=16)



def rollout(cfg: DiTConfig, spec: LoopSpec, blocks: int, hw: tuple[int, int] = (4, 4)) -> list[torch.Tensor]:
    dit = init_untrained(WanDiT(cfg), 0).eval()
    gen = BlockGenerator(dit, spec, SeededNoise(3), hw)
    gen.set_prompt(
        dit.encode_text(torch.randn(1, 4, cfg.text_dim, generator=torch.Generator().manual_seed(1)))
    )
    return [next_block(gen).latents for _ in range(blocks)]


def test_relative_equals_absolute_under_the_clamp():
    for spec in (
        LoopSpec(policy="static-sink", window_frames=9, sink_frames=3, capacity_frames=9),
        LoopSpec(
            policy="dysink",
            window_frames=6,
            capacity_frames=12,
            top_k=2,
            dedup_threshold=0.999,
            gate_rule="per-entry",
            gate_threshold=0.5,
            query_blocks=2,
        ),
    ):
        absolute = rollout(TINY_DIT, spec, 8)
        relative = rollout(
            TINY_DIT, dataclasses.replace(spec, rope_mode="relative", max_distance_frames=240), 8
        )
        assert all(torch.equal(a, r) for a, r in zip(absolute, relative, strict=True))
        clamped = rollout(TINY_DIT, dataclasses.replace(spec, rope_mode="relative", max_distance_frames=6), 8)
        assert not torch.equal(absolute[-1], clamped[-1])  # the clamp acts once distances exceed it
        assert all(torch.equal(a, c) for a, c in zip(absolute[:2], clamped[:2], strict=True))  # not before


@pytest.mark.slow  # long rollouts: make test-all, .ci/run
def test_an_hour_of_latent_frames():
    """5,000 blocks = 15,000 latent frames (~62.5 min at 16 fps), past the reference's 1,024 limit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 4-token tensors: threads only add overhead
    try:
        _hour_rollout()
    finally:
        torch.set_num_threads(threads)


def _hour_rollout() -> None:
    spec = LoopSpec(
        policy="static-sink",
        window_frames=6,
        sink_frames=3,
        capacity_frames=6,
        timesteps=(1000.0, 625.0),
        rope_mode="relative",
        max_distance_frames=240,
    )
    dit = init_untrained(WanDiT(MICRO), 0).eval()
    gen = BlockGenerator(dit, spec, SeededNoise(1), (2, 2))
    gen.set_prompt(dit.encode_text(torch.randn(1, 4, MICRO.text_dim)))
    last = None
    for _ in range(5000):
        last = next_block(gen)
    assert last.start_frame == 14_997 and gen.cache.global_end == 15_000 * gen.tokens_per_frame
    assert torch.isfinite(last.latents).all()


@pytest.mark.slow  # long rollouts: make test-all, .ci/run
def test_rolling_sink_runs_past_the_8192_position_table():
    """The reference's 8,192-row table ends at ~34 min; positions here are computed on the fly."""
    spec = LoopSpec(
        policy="rolling-sink",
        window_frames=12,
        capacity_frames=12,
        horizon_frames=12,
        timesteps=(1000.0, 625.0),
    )
    dit = init_untrained(WanDiT(MICRO), 0).eval()
    gen = BlockGenerator(dit, spec, SeededNoise(2), (2, 2))
    gen.set_prompt(dit.encode_text(torch.randn(1, 4, MICRO.text_dim)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(2740):  # 8,220 latent frames
            last = next_block(gen)
    finally:
        torch.set_num_threads(threads)
    assert last.start_frame > 8192 and last.record["rolling_sink"]["rope_first"] == last.start_frame - 3
    assert torch.isfinite(last.latents).all()


def test_dysink_with_a_static_sink_gates_the_sink():
    """With sink_size > 0 the reference's DySink gate also scores the whole sink against the local
    window (every call) and drops it when rho > tau."""
    base = LoopSpec(
        policy="dysink",
        window_frames=9,
        sink_frames=3,
        capacity_frames=15,
        top_k=2,
        dedup_threshold=0.999,
        gate_rule="per-entry",
        query_blocks=3,
    )
    never = rollout(TINY_DIT, dataclasses.replace(base, gate_threshold=1.0), 5)
    always = rollout(TINY_DIT, dataclasses.replace(base, gate_threshold=-1.0), 5)
    assert torch.equal(never[0], always[0])  # block 0: the sink is the block itself, keys identical
    assert not torch.equal(never[-1], always[-1])
