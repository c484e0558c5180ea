"""MemoryBank: DySink's store of past blocks, the one owner of the index and of three storage tiers.

The index (frame indices, (N, D) descriptors, insertion order) is always complete and in RAM, so
retrieval never depends on where an entry lives. Payloads (k, v, latent) live on the device (the
entries retrieved for the current block plus an LRU of `gpu_entries`), in host RAM (an LRU of
`ram_gb`, pinned with CUDA) and on disk (one safetensors file per entry in `work_dir`).
Eviction policy: see EVICTION_POLICY.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import torch
from torch import Tensor

from dysink_cli.engine.memory.persistence import BankPersistence
from dysink_cli.engine.memory.pinned import PinnedSpares
from dysink_cli.engine.memory.store import (
    DeviceKV,
    DeviceLoader,
    Payload,
    SpillWriter,
    decode_kv,
    encode_entry,
    kv_shapes,
    open_work_dir,
    read_entry,
)
from dysink_cli.engine.memory.types import COUNTERS, EVICTION_POLICY, BankEntries, BankEntry, DiskFile
from dysink_cli.errors import ConfigError

__all__ = ["EVICTION_POLICY", "BankEntry", "MemoryBank"]

log = logging.getLogger(__name__)


class MemoryBank(BankPersistence):
    """Entries in insertion order with tiered payloads; see EVICTION_POLICY for the caps."""

    def __init__(
        self,
        max_entries: int = 0,
        work_dir: Path | str | None = None,
        ram_gb: float = 8.0,
        disk_gb: float = 64.0,
        gpu_entries: int = 1,
        dtype: str = "same",
        device: torch.device | str = "cpu",
        checkpoint_blocks: int = 0,
    ) -> None:
        """checkpoint_blocks: blocks between checkpoints. Files of entries evicted since the last
        checkpoint stay on disk until the next one (at most one per block), so that many entries
        of headroom are kept inside disk_gb: bank files never exceed disk_gb."""
        self.max_entries, self.gpu_entries, self.dtype = max_entries, gpu_entries, dtype
        self.device = torch.device(device)
        self.work_dir = None if work_dir is None else open_work_dir(Path(work_dir))
        self.ram_budget = float("inf") if work_dir is None else ram_gb * 1e9
        self.disk_budget = float("inf") if work_dir is None else disk_gb * 1e9
        self.pin = self.device.type == "cuda"
        self._store_stream = torch.cuda.Stream(self.device) if self.pin else None  # device-to-host copies
        self._spares = PinnedSpares() if self.pin else None  # pinned buffers made ahead on a thread
        self.checkpoint_blocks = checkpoint_blocks
        self._largest_entry = 0
        self._largest_host = 0  # host bytes of the largest entry: the room the next one needs
        # index: always complete
        self._ids: list[int] = []
        self._frames: list[int] = []
        self._desc = torch.zeros(0, 0)  # (N, D) float32
        self._version: dict[int, int] = {}
        self._nbytes: dict[int, int] = {}
        self._next_id = 0
        # tiers
        self._gpu: OrderedDict[int, DeviceKV] = OrderedDict()
        self._loading: dict[int, Future[tuple[Payload, DeviceKV]]] = {}
        self._ram: OrderedDict[int, Payload] = OrderedDict()
        self._ram_bytes = 0
        self._pending: dict[int, tuple[int, Payload]] = {}  # writes in flight, shared with the writer
        self._lock = threading.Lock()
        self._files: dict[int, DiskFile] = {}
        self._protected: set[str] = set()  # named by the last checkpoint
        self._deferred: dict[str, int] = {}  # name -> bytes, deleted at the next checkpoint
        self._writer = SpillWriter()
        self._loader = DeviceLoader(self.device)
        self.counters = dict.fromkeys(COUNTERS, 0)

    # ---- index -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def frame_indices(self) -> list[int]:
        return list(self._frames)

    @property
    def entries(self) -> BankEntries:
        return BankEntries(self)

    def descriptors(self) -> Tensor:
        """(N, D) float32 matrix of the entries' descriptors (never modified in place)."""
        return self._desc

    @property
    def total_bytes(self) -> int:
        return sum(self._nbytes.values())

    def add(self, entry: BankEntry) -> None:
        """Store an entry (copied to host RAM), then apply the caps and the RAM budget. The entry's
        tensors are the bank's from now on (on CUDA they are copied on a side stream): pass copies
        (KVCache.last_tokens) and do not write into them."""
        payload = self._encode(entry.k, entry.v, entry.latent)
        if payload.nbytes > self.disk_budget:
            raise ConfigError(
                f"bank.disk_gb = {self.disk_budget / 1e9:g} is smaller than one entry "
                f"({payload.nbytes / 1e9:.3g} GB)",
                "raise bank.disk_gb or use bank.dtype fp8",
            )
        self._largest_entry = max(self._largest_entry, payload.nbytes)
        if self.live_budget <= 0:
            raise ConfigError(
                f"bank.disk_gb = {self.disk_budget / 1e9:g} cannot hold the {self.checkpoint_blocks} entries "
                f"({payload.nbytes / 1e9:.3g} GB each) evicted between two checkpoints plus live ones",
                "raise bank.disk_gb, lower output.checkpoint_every_blocks, or use bank.dtype fp8",
            )
        eid, self._next_id = self._next_id, self._next_id + 1
        row = entry.descriptor.detach().float().cpu().reshape(1, -1)
        self._ids.append(eid)
        self._frames.append(entry.frame_index)
        self._desc = row if len(self._ids) == 1 else torch.cat([self._desc, row])
        self._version[eid], self._nbytes[eid] = 0, payload.nbytes
        self._ram_put(eid, payload)
        self._apply_caps()
        self._spill_over_budget()

    def reserve_pinned(self, kv_shape: tuple[int, ...], kv_dtype: torch.dtype) -> None:
        """CUDA: pin the K/V host buffers of the entries the RAM tier will hold, on a thread from now on."""
        if self._spares is not None:
            self._spares.reserve_for(kv_shapes(kv_shape, kv_dtype, self.dtype), self.ram_budget)

    def _encode(self, k: Tensor, v: Tensor, latent: Tensor) -> Payload:
        return encode_entry(k, v, latent, self.dtype, self.pin, self._store_stream, self._spares)

    @property
    def needs_checkpoint(self) -> bool:
        """The headroom for files kept for the last checkpoint is used up: checkpoint now (the
        render spaces its checkpoints by time, and evictions may come faster than that)."""
        return bool(self.checkpoint_blocks) and len(self._deferred) >= self.checkpoint_blocks

    @property
    def live_budget(self) -> float:
        """disk_gb minus the headroom for files kept until the next checkpoint."""
        return self.disk_budget - self.checkpoint_blocks * self._largest_entry

    def _apply_caps(self) -> None:
        while self.max_entries and len(self._ids) > self.max_entries:
            self._evict_oldest(f"max_entries = {self.max_entries}")
        while self.total_bytes > self.live_budget:
            self._evict_oldest(f"disk_gb = {self.disk_budget / 1e9:g}")

    def _evict_oldest(self, reason: str) -> None:
        eid, frame = self._ids.pop(0), self._frames.pop(0)
        self._desc = self._desc[1:]
        self._drop_copies(eid)
        file = self._files.pop(eid, None)
        if file is not None:
            self._remove_file(file)
        nbytes = self._nbytes.pop(eid)
        del self._version[eid]
        self.counters["evictions"] += 1
        self.counters["evicted_bytes"] += nbytes
        log.info("memory bank: evicted the entry of frame %d (%s)", frame, reason)

    def _drop_copies(self, eid: int) -> None:
        """Forget every in-memory copy of an entry (device, loads in flight, RAM, pending write)."""
        self._gpu.pop(eid, None)
        future = self._loading.pop(eid, None)
        if future is not None:
            future.exception()  # wait; a corrupt file no longer matters
        self._ram_pop(eid)
        with self._lock:
            self._pending.pop(eid, None)

    # ---- RAM and disk ------------------------------------------------------------------------
    def _ram_put(self, eid: int, payload: Payload) -> None:
        self._ram_pop(eid)
        self._ram[eid] = payload
        self._ram_bytes += payload.host_nbytes
        self._largest_host = max(self._largest_host, payload.host_nbytes)

    def _ram_pop(self, eid: int) -> None:
        payload = self._ram.pop(eid, None)
        if payload is not None:
            self._ram_bytes -= payload.host_nbytes

    def _is_clean(self, eid: int) -> bool:
        file = self._files.get(eid)
        return file is not None and file.version == self._version[eid]

    def _path(self, name: str) -> Path:
        assert self.work_dir is not None
        return self.work_dir / name

    def _write(self, eid: int, payload: Payload) -> None:
        """Queue the current payload's file (write-behind on the writer thread)."""
        version = self._version[eid]
        file = DiskFile(f"entry_{eid:08d}_v{version}.safetensors", version, payload.nbytes)
        self._files[eid] = file
        with self._lock:
            self._pending[eid] = (version, payload)

        def written() -> None:
            with self._lock:
                if self._pending.get(eid, (None,))[0] == version:
                    del self._pending[eid]

        self._writer.write(self._path(file.name), payload, written)
        self.counters["spills"] += 1
        self.counters["spilled_bytes"] += payload.nbytes
        log.debug("memory bank: spilling entry %d (%d bytes)", eid, payload.nbytes)

    @property
    def host_bytes(self) -> int:
        """Host memory bank.ram_gb bounds: the RAM tier and the pinned buffers made ahead."""
        return self._ram_bytes + (self._spares.committed_bytes() if self._spares is not None else 0)

    def _spill_over_budget(self) -> None:
        """The LRU entries leave RAM while host_bytes > ram_gb (a dirty one is queued for writing and
        served from the queue); then the next to leave is written ahead while still in RAM, so that
        it usually leaves for free (EVICTION_POLICY)."""
        while self._ram and self.host_bytes > self.ram_budget:
            eid, payload = next(iter(self._ram.items()))
            if self._is_clean(eid):
                self.counters["ram_drops"] += 1
            else:
                self._write(eid, payload)
            self._ram_pop(eid)
        if self._ram and self.host_bytes + self._largest_host > self.ram_budget:
            eid, payload = next(iter(self._ram.items()))
            if not self._is_clean(eid):
                self._write(eid, payload)

    def _remove_file(self, file: DiskFile) -> None:
        if file.name in self._protected:
            self._deferred[file.name] = file.nbytes
        else:
            self._writer.delete(self._path(file.name))

    def _host_payload(self, eid: int) -> Payload | None:
        """The payload from RAM (marked recently used) or from a write in flight; None if on disk only."""
        if eid in self._ram:
            self._ram.move_to_end(eid)
            return self._ram[eid]
        with self._lock:
            pending = self._pending.get(eid)
        return pending[1] if pending is not None and pending[0] == self._version[eid] else None

    def _payload(self, eid: int) -> Payload:
        """The entry's host payload, reading its file into RAM if needed (synchronous)."""
        self._harvest(eid)
        payload = self._host_payload(eid)
        if payload is None:
            file = self._files[eid]
            payload = read_entry(self._path(file.name), file.nbytes, pin=self.pin)
            self.counters["reloads_disk_to_ram"] += 1
            self._ram_put(eid, payload)
            self._spill_over_budget()
        return payload

    # ---- device tier and retrieval ----------------------------------------------------------
    def prefetch(self, positions: Sequence[int]) -> None:
        """Start bringing these entries to the device (disk reads on a thread, H2D on a side stream)."""
        self._harvest()
        want = [self._ids[p] for p in positions]
        for eid in want:
            if eid in self._gpu:
                self._gpu.move_to_end(eid)
            elif eid not in self._loading:
                payload = self._host_payload(eid)
                if payload is None:
                    file = self._files[eid]
                    self._loading[eid] = self._loader.load(self._path(file.name), file.nbytes)
                else:
                    self._gpu[eid] = self._loader.to_device(payload)
                    self.counters["reloads_ram_to_gpu"] += 1
        self._trim_gpu(set(want))

    def _harvest(self, only: int | None = None) -> None:
        """Move finished loads (or wait for `only`) into RAM and the device tier."""
        for eid in [only] if only is not None else list(self._loading):
            future = self._loading.get(eid)
            if future is None or (only is None and not future.done()):
                continue
            del self._loading[eid]
            payload, kv = future.result()
            self._ram_put(eid, payload)
            self._gpu[eid] = kv
            self.counters["reloads_disk_to_ram"] += 1
            self.counters["reloads_ram_to_gpu"] += 1
        self._spill_over_budget()

    def _trim_gpu(self, keep: set[int]) -> None:
        others = [eid for eid in self._gpu if eid not in keep]  # least recently used first
        for eid in others[: max(0, len(others) - self.gpu_entries)]:
            del self._gpu[eid]

    def layer_kv(
        self,
        positions: list[int],
        dtype_roundtrip: torch.dtype | None,
        device: torch.device,
        dtype: torch.dtype,
    ) -> list[list[tuple[Tensor, Tensor]]]:
        """memory[layer] = [(k, v) of each chosen entry] for the DiT (optionally bf16-rounded)."""
        self.prefetch(positions)
        want = [self._ids[p] for p in positions]
        self.counters["retrieved"] += len(want)
        for eid in want:
            self._harvest(eid)
        self._trim_gpu(set(want))
        chosen = [self._loader.ready(self._gpu[eid]) for eid in want]
        num_layers = chosen[0].k.shape[0] if chosen else 0

        def prep(t: Tensor) -> Tensor:
            t = t.to(device)
            if dtype_roundtrip is not None:
                t = t.to(dtype_roundtrip)
            return t.to(dtype)

        ks = [prep(e.k) for e in chosen]
        vs = [prep(e.v) for e in chosen]
        return [[(k[layer], v[layer]) for k, v in zip(ks, vs, strict=True)] for layer in range(num_layers)]

    def entry(self, position: int) -> BankEntry:
        """The whole entry on the CPU, k and v in their original dtype."""
        eid = self._ids[position]
        payload = self._payload(eid)
        payload.wait()
        kv = decode_kv(payload, torch.device("cpu"))
        return BankEntry(self._frames[position], self._desc[position], kv.k, kv.v, payload.tensors["latent"])

    def replace_kv(self, position: int, k: Tensor, v: Tensor) -> None:
        """New K/V for an entry (prompt-switch re-cache); descriptor and latent stay."""
        eid = self._ids[position]
        latent = self._payload(eid).tensors["latent"]
        payload = self._encode(k, v, latent)
        self._drop_copies(eid)
        self._version[eid] += 1
        file = self._files.pop(eid, None)
        if file is not None:
            self._remove_file(file)
        self._nbytes[eid] = payload.nbytes
        self._ram_put(eid, payload)
        self._apply_caps()
        self._spill_over_budget()

    # ---- persistence, stats, shutdown --------------------------------------------------------
    def flush(self) -> None:
        """Wait for every queued spill write and file delete; raise the first write error."""
        self._writer.flush()

    def stats(self) -> dict[str, int]:
        """Counters (retrieved, spills, reloads disk->RAM and RAM->GPU, evictions) and entries/bytes per tier.

        The "gpu" tier is the device tier: on a CPU device it holds decoded CPU tensors.
        """
        with self._lock:
            pending = list(self._pending.values())
        return {
            **self.counters,
            "entries": len(self._ids),
            "total_bytes": self.total_bytes,
            "gpu_entries": len(self._gpu),
            "gpu_bytes": sum(kv.nbytes for kv in self._gpu.values()),
            "ram_entries": len(self._ram),
            "ram_bytes": self._ram_bytes,
            "pending_writes": len(pending),
            "pending_bytes": sum(p.nbytes for _, p in pending),
            "disk_entries": len(self._files),
            "disk_bytes": sum(f.nbytes for f in self._files.values()) + sum(self._deferred.values()),
            "pinned_ready_hits": self._spares.hits if self._spares else 0,
            "pinned_ready_misses": self._spares.misses if self._spares else 0,
        }

    def close(self) -> None:
        """Finish queued writes and stop the threads (the bank stays readable from RAM and disk)."""
        try:
            self.flush()
        finally:
            self._writer.close()
            for future in self._loading.values():
                future.exception()
            self._loader.close()
            if self._spares is not None:
                self._spares.close()
