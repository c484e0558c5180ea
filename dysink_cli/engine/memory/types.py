"""Memory-bank records and the eviction policy text (shared by the bank and its store)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

EVICTION_POLICY = """\
The bank drops its oldest entry (FIFO, as the reference's memory_max_entries) from every tier and
from the index, with an INFO log line, while it holds more than bank.max_entries entries or more
than bank.disk_gb of payload (every entry counts, wherever it lives, since any entry may end up on
disk; this keeps the decision independent of the tiers). When host RAM holds more than bank.ram_gb
(the RAM tier's payloads plus, on CUDA, the pinned buffers made ahead for the next entries), the
least recently used entries leave RAM: an entry is written to disk once, and one whose file is
current is just dropped. The next entry to leave is written ahead while it is still in RAM, so with
a disk that keeps up the bank's host memory stays within bank.ram_gb; a slower disk adds the writes
in flight of entries that left (SpillWriter's queue, 4 at most, then the render waits). The
device keeps the entries retrieved for the current block plus the bank.gpu_entries most recently
retrieved others. Files still named by the last checkpoint are deleted only at the next
checkpoint; the bank keeps room for them (one entry per block of the checkpoint interval) inside
bank.disk_gb, so its files never exceed bank.disk_gb. Without a work folder there is no disk and
no byte cap: everything stays in RAM. GB = 1e9 bytes of stored payload (fp8 halves a bf16 entry)."""

COUNTERS = (
    "retrieved",
    "spills",
    "spilled_bytes",
    "ram_drops",
    "reloads_disk_to_ram",
    "reloads_ram_to_gpu",
    "evictions",
    "evicted_bytes",
)
STATE_VERSION = 1


@dataclass
class BankEntry:
    """One stored block: K/V (L, B, n, H, D), descriptor (D,), latent (B, F, C, H, W)."""

    frame_index: int
    descriptor: Tensor
    k: Tensor
    v: Tensor
    latent: Tensor


@dataclass(frozen=True)
class DiskFile:
    """The file written (or queued) for payload `version` of an entry."""

    name: str
    version: int
    nbytes: int


class EntrySource(Protocol):
    def __len__(self) -> int: ...
    def entry(self, position: int) -> BankEntry: ...


class BankEntries(Sequence[BankEntry]):
    """Read-only view of a bank's entries in bank order; each access loads the entry to CPU."""

    def __init__(self, bank: EntrySource) -> None:
        self._bank = bank

    def __len__(self) -> int:
        return len(self._bank)

    def __getitem__(self, position: int) -> BankEntry:  # type: ignore[override]
        return self._bank.entry(position)

    def __iter__(self) -> Iterator[BankEntry]:
        return (self._bank.entry(p) for p in range(len(self._bank)))
