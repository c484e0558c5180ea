"""KVCache: the sink stays pinned, the window rolls, counters move only on new tokens."""

from __future__ import annotations

import torch

from dysink_cli.engine.kv_cache import KVCache
from dysink_cli.engine.rolling_sink import rolling_sink_sources


def frame_values(cache: KVCache) -> list[int]:
    """Which frame's marker each slot holds (layer 0, first channel)."""
    return cache.k[0, 0, :: cache.tokens_per_frame, 0, 0].long().tolist()


def write_block(cache: KVCache, start: int, window: int, frames: int = 3) -> None:
    call = cache.begin(start, frames, window)
    k = torch.arange(start, start + frames).float().repeat_interleave(cache.tokens_per_frame)
    k = k[None, :, None, None].expand(1, -1, 1, 1)
    call.attend_kv(0, k, k, k)


def test_static_sink_is_never_evicted():
    cache = KVCache(1, 1, capacity_frames=9, tokens_per_frame=2, num_heads=1, head_dim=1, sink_frames=3)
    for b in range(5):
        write_block(cache, 3 * b, window=9)
    assert frame_values(cache) == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    plan = cache.plan(15, 3, 9)  # full buffer: sink and window are adjacent, read as one slice
    assert plan.window == ((0, 18),) and plan.sink_tokens == 6
    wide = KVCache(1, 1, capacity_frames=12, tokens_per_frame=2, num_heads=1, head_dim=1, sink_frames=3)
    for b in range(5):
        write_block(wide, 3 * b, window=9)
    assert wide.plan(15, 3, 9).window == ((0, 6), (12, 24))  # sink, then the last 6 frames


def test_window_rolls_and_recompute_keeps_counters():
    cache = KVCache(1, 1, capacity_frames=6, tokens_per_frame=1, num_heads=1, head_dim=1)
    write_block(cache, 0, 6)
    write_block(cache, 3, 6)
    assert (cache.global_end, cache.local_end) == (6, 6)
    write_block(cache, 6, 6)  # rolls by one block
    assert frame_values(cache) == [3, 4, 5, 6, 7, 8]
    before = (cache.global_end, cache.local_end)
    write_block(cache, 6, 6)  # a later denoising step of the same block overwrites in place
    assert (cache.global_end, cache.local_end) == before
    assert cache.plan(6, 3, 3).window == ((3, 6),)  # a 3-frame window sees only the block


def test_last_tokens_are_the_newest_block():
    cache = KVCache(1, 1, capacity_frames=6, tokens_per_frame=2, num_heads=1, head_dim=1)
    write_block(cache, 0, 6)
    write_block(cache, 3, 6)
    k, _ = cache.last_tokens(6)
    assert k[0, 0, ::2, 0, 0].tolist() == [3.0, 4.0, 5.0]


def test_rolling_sink_schedule_matches_the_spec_tables():
    assert rolling_sink_sources(18, 21) is None
    assert rolling_sink_sources(21, 21) == ([17, 16, 15], 18)  # first sweep is backward
    assert rolling_sink_sources(39, 21) == ([0, 1, 2], 36)  # then forward
    assert rolling_sink_sources(57, 21) == ([17, 16, 15], 54)  # period 12 blocks
    assert rolling_sink_sources(12, 12) == ([8, 7, 6], 9)  # the fixture's horizon
