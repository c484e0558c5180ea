"""DySink sink anomaly gate (DySink eq. 8-9 and the release's per-entry variant), pure functions.

The gate compares, per head, how strongly the block's mean query attends (raw dot product, no
1/sqrt(d), no softmax) to a retrieved entry versus the local window, and drops anomalous entries.
"""

from __future__ import annotations

import torch
from torch import Tensor


def head_affinity(q_mean: Tensor, keys: Tensor) -> Tensor:
    """Mean over keys of q_mean . k per head: q_mean (B, H, D), keys (B, N, H, D) -> (B, H).

    mean_k(q . k) = q . mean_k(k), so entries' key means can be precomputed once per block.
    """
    return torch.einsum("bhd,bhd->bh", q_mean, keys.mean(dim=1))


def entry_ratios(entry_affinity: Tensor, local_affinity: Tensor) -> Tensor:
    """rho_e = fraction of (batch, head) with entry affinity > local (strict). (E, B, H), (B, H) -> (E,)."""
    return (entry_affinity > local_affinity.unsqueeze(0)).float().mean(dim=(1, 2))


def gate_keep(ratios: Tensor, threshold: float, rule: str = "per-entry") -> Tensor:
    """Which entries survive. per-entry: keep e iff rho_e <= tau (release, strict '>' drops).

    max (paper eq. 9): g = 1[max_e rho_e <= tau]; all entries kept if g else none.
    Decided on the tensors' device (no host sync).
    """
    if rule == "per-entry":
        return ratios <= threshold
    if rule == "max":
        return (ratios.max() <= threshold).expand(ratios.shape).clone()
    if rule == "off":
        return torch.ones_like(ratios, dtype=torch.bool)
    raise ValueError(f"unknown gate rule {rule!r}")
