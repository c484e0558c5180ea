"""Deferring DySink's store of a block (render hands frames on first) changes nothing."""

from __future__ import annotations

import torch

from dysink_cli.engine.generator import BlockGenerator, generator_state
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.engine.spec import LoopSpec
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.tiny import TINY_DIT, init_untrained

SPEC = LoopSpec(policy="dysink", window_frames=6, capacity_frames=12, top_k=2, gate_threshold=0.5)


def describe(latents: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(latents.float().mean(dim=(0, 1, 3, 4)), dim=0)


def rollout(defer: bool, blocks: int = 6) -> list:
    dit = init_untrained(WanDiT(TINY_DIT), 0).eval()
    gen = BlockGenerator(dit, SPEC, SeededNoise(3), (4, 4), describe=describe)
    gen.set_prompt(
        dit.encode_text(torch.randn(1, 4, TINY_DIT.text_dim, generator=torch.Generator().manual_seed(1)))
    )
    outs = []
    for i in range(blocks):
        out = gen.next_block(defer_memory=defer)
        if defer:
            assert "dedup" not in out.record
            if i % 2:  # the next block finishes it by itself when the caller does not
                gen.finish_block()
                assert "dedup" in out.record
        outs.append(out)
    gen.finish_block()
    generator_state(gen)  # asserts that nothing is left unstored
    return outs


def test_deferred_store_gives_the_same_blocks_and_records():
    plain, deferred = rollout(False), rollout(True)
    for a, b in zip(plain, deferred, strict=True):
        assert torch.equal(a.latents, b.latents)
        assert a.record["retrieval"] == b.record["retrieval"]
        assert a.record["dedup"]["added_to_bank"] == b.record["dedup"]["added_to_bank"]
        assert a.record["bank_size_after_block"] == b.record["bank_size_after_block"]
