"""The block loop with a mock denoiser (no weights): block count, seeds, cache positions,
retrieval only after the first store, the descriptor handed in by the caller, and state()."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.model.config import DiTConfig

CFG = DiTConfig(dim=24, ffn_dim=16, num_heads=2, num_layers=2, text_dim=4, text_len=4, freq_dim=8)
HW = (4, 4)  # latent grid: 4 tokens per frame after the (1, 2, 2) patch


class MockDiT(nn.Module):
    """Writes each call's K/V through the cache as WanDiT does; flow = the input minus the mean of
    the attended values (so the context changes the output). Logs what it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = CFG
        self.calls: list[dict] = []

    def encode_text(self, context: Tensor) -> list[tuple[Tensor, Tensor]]:
        return [(context, context)] * CFG.num_layers

    def forward(self, x, t, text_kv, rope, ctx, backend="sdpa"):  # x (B, C, F, H, W)
        b, c, f, h, w = x.shape
        tokens = x.permute(0, 2, 3, 4, 1).reshape(b, f * (h // 2) * (w // 2), -1)[..., : CFG.dim]
        kv = tokens.reshape(b, tokens.shape[1], CFG.num_heads, -1)
        attended = 0
        for layer in range(CFG.num_layers):
            keys, values, _ = ctx.cache.attend_kv(layer, kv, kv, kv)
            attended = keys.shape[1]
        memory = sum(e[0].shape[1] for e in ctx.memory[0]) if ctx.memory else 0
        self.calls.append({"t": float(t[0, 0]), "attended": attended, "memory": memory})
        return x - 0.01 * values.float().mean()


def generator(spec: LoopSpec, seed: int = 3) -> tuple[BlockGenerator, MockDiT]:
    dit = MockDiT()
    gen = BlockGenerator(dit, spec, SeededNoise(seed), HW)  # type: ignore[arg-type]
    gen.set_prompt(dit.encode_text(torch.zeros(1, 4, 4)))
    return gen, dit


def run(gen: BlockGenerator, blocks: int) -> list[Tensor]:
    out = []
    for _ in range(blocks):
        block = gen.next_block()
        if gen.needs_descriptor:
            gen.finish_block(torch.nn.functional.normalize(torch.ones(4) + block.index, dim=0))
        out.append(block.latents)
    return out


def test_blocks_calls_and_cache_positions_of_a_window() -> None:
    spec = LoopSpec(policy="window", window_frames=6, capacity_frames=6)
    gen, dit = generator(spec)
    latents = run(gen, 5)
    assert gen.block == 5 and all(x.shape == (1, 3, 16, *HW) for x in latents)
    assert len(dit.calls) == 5 * (len(spec.timesteps) + 1)  # 4 steps and a clean pass per block
    assert [c["t"] for c in dit.calls[:5]] == [*spec.timesteps, 0.0]
    tpf = 4
    assert gen.cache.global_end == 15 * tpf and gen.cache.local_end == 6 * tpf  # rolled at capacity
    assert max(c["attended"] for c in dit.calls) == 6 * tpf  # never more than the window


def test_seeds_decide_the_video() -> None:
    spec = LoopSpec(policy="window", window_frames=6, capacity_frames=6)
    a, b, c = (run(generator(spec, seed)[0], 3) for seed in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_retrieval_only_after_the_first_store_and_the_descriptor_is_required() -> None:
    spec = LoopSpec(policy="dysink", window_frames=3, capacity_frames=9, top_k=2, dedup_threshold=0.999)
    gen, dit = generator(spec)
    first = gen.next_block()
    assert "retrieval" not in first.record or first.record["retrieval"] is None
    with pytest.raises(AssertionError, match="finish_block"):
        gen.next_block()  # the block's store waits for its descriptor
    with pytest.raises(ValueError, match="descriptor"):
        gen.finish_block(None)
    run(gen, 4)
    memory_calls = [c["memory"] for c in dit.calls]
    per_block = len(spec.timesteps) + 1
    assert sum(memory_calls[:per_block]) == 0  # block 0: nothing stored yet
    assert any(memory_calls[per_block:])  # later blocks see retrieved entries (denoising steps)
    assert all(m == 0 for m in memory_calls[per_block - 1 :: per_block])  # never in the clean pass


def test_a_query_handed_in_decides_retrieval_instead_of_the_recent_blocks() -> None:
    spec = LoopSpec(policy="dysink", window_frames=3, capacity_frames=6, top_k=1, dedup_threshold=0.5)
    gen, _ = generator(spec)
    onehot = torch.eye(8)
    for b in range(4):  # blocks 0-3 stored under orthogonal descriptors
        gen.next_block()
        gen.finish_block(onehot[b])
    for b, wanted in ((4, 2), (5, 1)):  # the recent blocks' descriptors score every candidate 0
        out = gen.next_block(query=onehot[wanted])
        gen.finish_block(onehot[b])
        retrieval = out.record["retrieval"]
        assert retrieval["retrieved_blocks_by_score"] == [wanted] and retrieval["num_query_descriptors"] == 1
        assert retrieval["retrievable_frames"] == list(range(0, 3 * (b - 1), 3))  # the last block is excluded


def test_state_round_trip_continues_bit_exactly() -> None:
    spec = LoopSpec(policy="static-sink", window_frames=6, sink_frames=3, capacity_frames=6)
    straight = run(generator(spec)[0], 6)
    gen, _ = generator(spec)
    run(gen, 3)
    tensors, meta = gen.state()
    fresh, _ = generator(spec)
    fresh.load_state({k: v.clone() for k, v in tensors.items()}, meta)
    assert fresh.block == 3 and fresh.cache.global_end == gen.cache.global_end
    resumed = run(fresh, 3)
    assert all(torch.equal(x, y) for x, y in zip(straight[3:], resumed, strict=True))


@pytest.mark.parametrize("roundtrip", [True, False])
def test_retrieved_kv_are_the_stored_kv_rounded_through_bf16(roundtrip: bool) -> None:
    spec = LoopSpec(
        policy="dysink", window_frames=3, capacity_frames=9, top_k=2, retrieved_bf16_roundtrip=roundtrip
    )
    gen, dit = generator(spec)
    seen: list = []
    forward = dit.forward

    def spy(x, t, text_kv, rope, ctx, backend="sdpa"):
        if ctx.memory:
            seen.append([[(k.clone(), v.clone()) for k, v in layer] for layer in ctx.memory])
        return forward(x, t, text_kv, rope, ctx, backend)

    dit.forward = spy  # type: ignore[method-assign]
    run(gen, 4)  # block 0 is stored, then retrieved once outside the exclusion span
    stored = gen.memory.bank.entry(0)  # type: ignore[union-attr]
    assert seen, "nothing was retrieved"
    for layer, entries in enumerate(seen[0]):
        ((k, v),) = entries
        want_k, want_v = stored.k[layer], stored.v[layer]
        if roundtrip:
            want_k, want_v = want_k.to(torch.bfloat16).float(), want_v.to(torch.bfloat16).float()
            assert not torch.equal(want_k, stored.k[layer])  # the rounding is visible in fp32
        assert torch.equal(k, want_k) and torch.equal(v, want_v)


@pytest.mark.parametrize("policy", ["window", "static-sink", "dysink", "rolling-sink"])
def test_prefilled_blocks_continue_exactly_as_generated_ones(policy: str) -> None:
    spec = {
        "window": LoopSpec(policy="window", window_frames=6, capacity_frames=6),
        "static-sink": LoopSpec(policy="static-sink", window_frames=6, sink_frames=3, capacity_frames=6),
        "dysink": LoopSpec(policy="dysink", window_frames=3, capacity_frames=9, top_k=2),
        "rolling-sink": LoopSpec(policy="rolling-sink", window_frames=9, capacity_frames=9, horizon_frames=9),
    }[policy]
    generated = run(generator(spec)[0], 6)
    gen, _ = generator(spec)
    for latents in generated[:3]:  # start from the first three blocks as given frames
        out = gen.prefill(latents)
        assert out.record["prefilled"] and out.x0_per_step == []
        if gen.needs_descriptor:
            gen.finish_block(torch.nn.functional.normalize(torch.ones(4) + out.index, dim=0))
    assert gen.block == 3
    continued = run(gen, 3)
    assert all(torch.equal(a, b) for a, b in zip(generated[3:], continued, strict=True))


def test_prefill_takes_exactly_one_block() -> None:
    gen, _ = generator(LoopSpec(policy="window", window_frames=6, capacity_frames=6))
    with pytest.raises(ValueError, match="one block of 3 latent frames"):
        gen.prefill(torch.zeros(1, 2, 16, *HW))
