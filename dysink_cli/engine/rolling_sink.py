"""Rolling Sink (arXiv 2602.07775): replay stored early frames at advancing positions.

Pure schedule plus the one cache operation it needs: overwrite the previous block's slot with
stored un-rotated originals, re-rotated at that slot's own time indices.
"""

from __future__ import annotations

import torch

from dysink_cli.engine.kv_cache import KVCache
from dysink_cli.model.rope import RopeSpec, apply_rope, layer_table, rope_tables


def rolling_sink_sources(
    start_frame: int, horizon_frames: int, block_frames: int = 3
) -> tuple[list[int], int] | None:
    """Source frames (slot order) and first time index for the block starting at start_frame.

    p = s - block; R = H - block; (phase, off) = divmod(p, R); even phase sweeps forward
    [off, off+1, ...], odd phase backward [R-1-off, R-2-off, ...]. None before the horizon.
    """
    if start_frame < horizon_frames:
        return None
    p = start_frame - block_frames
    reverse_window = horizon_frames - block_frames
    phase, off = divmod(p, reverse_window)
    if phase % 2 == 0:
        return [off + j for j in range(block_frames)], p
    return [reverse_window - 1 - off - j for j in range(block_frames)], p


def reinsert(
    cache: KVCache,
    start_frame: int,
    horizon_frames: int,
    block_frames: int,
    freqs: RopeSpec,
    grid_hw: tuple[int, int],
) -> tuple[list[int], int] | None:
    """After a block's clean pass: overwrite the previous block's slot with re-rotated originals."""
    plan = rolling_sink_sources(start_frame, horizon_frames, block_frames)
    if plan is None:
        return None
    sources, first_index = plan
    assert cache.raw_k is not None and cache.raw_v is not None
    tpf = cache.tokens_per_frame
    tokens = torch.cat([torch.arange(f * tpf, (f + 1) * tpf) for f in sources]).to(cache.raw_k.device)
    raw_k = cache.raw_k.index_select(2, tokens)  # (L, B, n, H, D), frame order flipped, tokens kept
    raw_v = cache.raw_v.index_select(2, tokens)
    frames = torch.arange(first_index, first_index + block_frames)
    rope = rope_tables(freqs, frames, *grid_hw, cache.raw_k.device)
    k = torch.stack([apply_rope(raw_k[layer], layer_table(rope, layer)) for layer in range(raw_k.shape[0])])
    n = block_frames * tpf
    cache.overwrite(cache.local_end - 2 * n, k, raw_v)
    return sources, first_index
