"""The `oracle` policy of `dysink bench revisit`: DySink retrieval by the true camera position.

A block's descriptor comes from its mean camera position: the descriptors of a scenario's blocks are
one factorised kernel matrix, so the cosine of two is exactly 1 / (1 + (2 d)^2), d their distance in
frames (0.5 at half a frame: half the view shared), and top-k by cosine is top-k by nearness. Also the
share of a policy's retrieved blocks that the oracle would have picked from the same candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dysink_cli.benchmarks.revisit_scenarios import LATENTS_PER_BLOCK, Scenario, block_start_frame


def frame_distances(a_px: Tensor, b_px: Tensor, frame_px: tuple[float, float]) -> Tensor:
    """Camera distances (N, M) between positions a (N, 2) and b (M, 2), px, in frames per axis."""
    scale = torch.tensor(frame_px, dtype=torch.float64)
    return ((a_px.double()[:, None] - b_px.double()[None]) / scale).norm(dim=-1)


def position_descriptors(xy_px: Tensor, frame_px: tuple[float, float]) -> Tensor:
    """Unit descriptors (N, N) of N camera positions (N, 2) px whose dot products are the inverse
    quadratic kernel 1 / (1 + (2 d)^2) of their distances d in frames: its Gram matrix, factorised
    (positive definite in any dimension, a scale mixture of Gaussians; heavy-tailed, so far places
    still rank by distance)."""
    gram = 1.0 / (1.0 + (2.0 * frame_distances(xy_px, xy_px, frame_px)) ** 2)  # (N, N)
    values, vectors = torch.linalg.eigh(gram)
    return F.normalize(vectors * values.clamp(min=0.0).sqrt(), dim=-1).float()  # rows: z z^T = gram


def block_positions(scenario: Scenario) -> Tensor:
    """(blocks, 2) float64: each render block's mean top-left camera position, px."""
    path = scenario.path()
    spans = [(block_start_frame(b), block_start_frame(b + 1)) for b in range(scenario.blocks)]
    return torch.stack([path[first:end].mean(dim=0) for first, end in spans])


def oracle_descriptors(scenario: Scenario, frame_px: tuple[float, float]) -> Callable[[int], Tensor]:
    """Block index -> its position descriptor (render's `block_descriptor`)."""
    table = position_descriptors(block_positions(scenario), frame_px)  # (blocks, blocks)
    return lambda block: table[block]


def nearest_blocks(
    positions: Tensor, block: int, candidates: Sequence[int], k: int, frame_px: tuple[float, float]
) -> set[int]:
    """The candidates no farther from `block` than its k-th nearest (ties included), distance in
    frames per axis (the kernel's metric)."""
    if not candidates or k <= 0:
        return set()
    far = frame_distances(positions[list(candidates)], positions[block][None], frame_px)[:, 0]  # (C,)
    kth = far.sort().values[min(k, len(candidates)) - 1]
    return {c for c, d in zip(candidates, far.tolist(), strict=True) if d <= float(kth) + 1e-9}


def retrieved_blocks(stats: Sequence[dict[str, Any]]) -> dict[int, list[int]]:
    """Block -> the blocks it retrieved (frame order), from per-block render stats; none: left out."""
    return {
        s["block"]: [f // LATENTS_PER_BLOCK for f in s["retrieved_frames"]]
        for s in stats
        if s.get("retrieved_frames")
    }


def retrieval_precision(
    stats: Sequence[dict[str, Any]], positions: Tensor, k: int, frame_px: tuple[float, float]
) -> float | None:
    """Share of the blocks retrieved (per-block render stats) that the oracle would pick from the
    same retrievable entries; None when nothing was retrieved."""
    hits = total = 0
    for s in stats:
        retrieved = {f // LATENTS_PER_BLOCK for f in s.get("retrieved_frames", [])}
        if not retrieved:
            continue
        candidates = [f // LATENTS_PER_BLOCK for f in s["retrievable_frames"]]
        hits += len(retrieved & nearest_blocks(positions, s["block"], candidates, k, frame_px))
        total += len(retrieved)
    return hits / total if total else None
