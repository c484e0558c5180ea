"""MemoryBank: DySink's store of past blocks (clean K/V of every layer, descriptor, latent, frame).

The bank owns its entries; retrieval hands out per-layer K/V of chosen entries. Descriptors stay
in one (N, D) matrix for scoring.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class BankEntry:
    """One stored block: K/V (L, B, n, H, D), descriptor (D,), latent (B, F, C, H, W)."""

    frame_index: int
    descriptor: Tensor
    k: Tensor
    v: Tensor
    latent: Tensor


class MemoryBank:
    """Entries in insertion order; optional FIFO cap (`max_entries`, 0 = unlimited)."""

    def __init__(self, max_entries: int = 0) -> None:
        self.max_entries = max_entries
        self.entries: list[BankEntry] = []

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def frame_indices(self) -> list[int]:
        return [e.frame_index for e in self.entries]

    def descriptors(self) -> Tensor:
        """(N, D) float32 matrix of the entries' descriptors."""
        if not self.entries:
            return torch.zeros(0, 0)
        return torch.stack([e.descriptor.float() for e in self.entries])

    def add(self, entry: BankEntry) -> None:
        self.entries.append(entry)
        if self.max_entries and len(self.entries) > self.max_entries:
            self.entries.pop(0)

    def layer_kv(self, positions: list[int], dtype_roundtrip: torch.dtype | None,
                 device: torch.device, dtype: torch.dtype) -> list[list[tuple[Tensor, Tensor]]]:
        """memory[layer] = [(k, v) of each chosen entry] for the DiT (optionally bf16-rounded)."""
        chosen = [self.entries[p] for p in positions]
        num_layers = chosen[0].k.shape[0] if chosen else 0

        def prep(t: Tensor) -> Tensor:
            t = t.to(device)
            if dtype_roundtrip is not None:
                t = t.to(dtype_roundtrip)
            return t.to(dtype)

        ks = [prep(e.k) for e in chosen]
        vs = [prep(e.v) for e in chosen]
        return [[(k[layer], v[layer]) for k, v in zip(ks, vs)] for layer in range(num_layers)]

    def replace_kv(self, position: int, k: Tensor, v: Tensor) -> None:
        """New K/V for an entry (prompt-switch re-cache); descriptor and latent stay."""
        self.entries[position].k, self.entries[position].v = k, v
