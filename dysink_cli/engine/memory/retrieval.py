"""DySink retrieval math (DySink section 3.2, release code), pure functions on descriptors.

Descriptors are L2-normalised; scores are cosine similarities. Frame indices are block starts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def effective_window(window_frames: int, frames_per_block: int, top_k: int, bank_size: int) -> int:
    """W_eff = W + block * max(0, k - |bank|): the window widens while the bank is short."""
    return window_frames + frames_per_block * max(0, top_k - bank_size)


def cosine_matrix(a: Tensor, b: Tensor) -> Tensor:
    """cos(a_i, b_j) for a (N, D), b (M, D) -> (N, M), in float32."""
    return F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T


def retrieval_scores(queries: Tensor, bank: Tensor) -> Tensor:
    """score(e) = mean over queries of cos(query, descriptor_e): (Q, D), (N, D) -> (N,)."""
    return cosine_matrix(queries, bank).mean(dim=0)


def excluded_mask(
    frame_indices: list[int], start_frame: int, exclusion_frames: int, sink_frames: int
) -> Tensor:
    """Entries whose start frame lies in [0, sink) or [max(0, f0 - W_x), f0) are not retrievable."""
    lo = max(0, start_frame - exclusion_frames)
    return torch.tensor([f < sink_frames or lo <= f < start_frame for f in frame_indices], dtype=torch.bool)


def select_top_k(scores: Tensor, excluded: Tensor, k: int) -> list[int]:
    """Indices of the top min(k, #eligible) scores, best first (torch.topk order)."""
    masked = scores.masked_fill(excluded, float("-inf"))
    k = min(k, int((~excluded).sum()))
    if k <= 0:
        return []
    return torch.topk(masked, k).indices.tolist()


def dedup_max_similarity(descriptor: Tensor, bank: Tensor) -> tuple[float, list[float]]:
    """Largest cosine to the bank, floored at 0 (and every similarity). bank (N, D)."""
    if bank.shape[0] == 0:
        return 0.0, []
    sims = cosine_matrix(descriptor[None], bank)[0]
    return max(0.0, float(sims.max())), sims.tolist()
