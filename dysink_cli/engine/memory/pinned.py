"""Pinned host buffers made ahead of need, on a thread (CUDA banks only).

Pinning fresh host memory costs ~0.55 ms per MB (measured: 227-262 ms for one 0.43 GB K or V on the
H200 box), and until the bank's RAM tier is full every stored block needs new buffers: storing a
full-size block spent ~0.5 s in `torch.empty(pin_memory=True)` on the render thread. `PinnedSpares`
makes sets of buffers shaped like the bank's entries on a thread: `reserve` starts the sets the RAM
tier will fill (called while the render warms up), then `spares` sets are kept ready (refilled from
torch's caching host allocator once entries leave RAM). A take that finds none ready returns None
and the caller allocates.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from typing import Any

import torch
from torch import Tensor

from dysink_cli.engine.memory.store import host_block_bytes

Shapes = tuple[tuple[str, tuple[int, ...], torch.dtype], ...]
MAX_RESERVED_SETS = 32  # sets pinned ahead at most (a larger bank.ram_gb fills the rest as it goes)


def sets_to_reserve(ram_budget_bytes: float, bytes_per_set: int, spares: int) -> int:
    """Sets to pin ahead: as many as bank.ram_gb holds (capped; none without a budget), at least
    the spares; the bank counts the sets not taken yet inside its budget (committed_bytes).
    `bytes_per_set`: pinned bytes of one set (set_bytes)."""
    held = 0 if math.isinf(ram_budget_bytes) else int(ram_budget_bytes // bytes_per_set)
    return max(min(held, MAX_RESERVED_SETS), spares)


def set_bytes(shapes: Shapes) -> int:
    """Pinned bytes of one set of buffers of these shapes."""
    return sum(host_block_bytes(math.prod(shape) * dtype.itemsize, True) for _, shape, dtype in shapes)


def shapes_of(tensors: dict[str, Tensor]) -> Shapes:
    return tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(tensors.items()))


class PinnedSpares:
    """Ready sets of pinned buffers for entries of one set of shapes."""

    def __init__(self, spares: int = 2) -> None:
        self.spares = spares
        self._shapes: Shapes | None = None
        self._set_bytes = 0  # pinned bytes of one set of _shapes
        self._ready: deque[dict[str, Tensor]] = deque()
        self._cond = threading.Condition()
        self._target = spares
        self._stop = False
        self._thread: threading.Thread | None = None
        self.hits = self.misses = 0

    def reserve(self, shapes: Shapes, sets: int) -> None:
        """Start making `sets` sets now (then keep `spares` ready as they are taken)."""
        self._restart(shapes, max(sets, self.spares))

    def reserve_for(self, shapes: dict[str, tuple[tuple[int, ...], Any]], ram_budget_bytes: float) -> None:
        """Reserve the sets a RAM tier of `ram_budget_bytes` holds, of these {name: (shape, dtype)}."""
        ordered = tuple((name, shape, dtype) for name, (shape, dtype) in sorted(shapes.items()))
        self.reserve(ordered, sets_to_reserve(ram_budget_bytes, set_bytes(ordered), self.spares))

    def committed_bytes(self) -> int:
        """Pinned bytes of the sets ready or being made (the target; more only while one is taken)."""
        with self._cond:
            return max(self._target, len(self._ready)) * self._set_bytes if self._thread else 0

    def take(self, tensors: dict[str, Tensor]) -> dict[str, Tensor] | None:
        """Pinned buffers shaped like `tensors` if a set is ready, else None (allocate them yourself)."""
        shapes = shapes_of(tensors)
        if shapes != self._shapes:
            self._restart(shapes, self.spares)
            self.misses += 1
            return None
        with self._cond:
            self._target = max(self.spares, self._target - 1)
            bufs = self._ready.popleft() if self._ready else None
            self._cond.notify_all()
        if bufs is None:
            self.misses += 1
        else:
            self.hits += 1
        return bufs

    def _restart(self, shapes: Shapes, target: int) -> None:
        self.close()
        self._shapes, self._target, self._stop = shapes, target, False
        self._set_bytes = set_bytes(shapes)
        self._thread = threading.Thread(target=self._fill, name="dysink-bank-pinned", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        shapes = self._shapes
        assert shapes is not None
        while True:
            with self._cond:
                while not self._stop and len(self._ready) >= self._target:
                    self._cond.wait()
                if self._stop:
                    return
            bufs = {name: torch.empty(shape, dtype=dtype, pin_memory=True) for name, shape, dtype in shapes}
            with self._cond:
                if self._stop:
                    return
                self._ready.append(bufs)

    def close(self) -> None:
        """Stop the thread; the sets not taken go back to torch's caching host allocator."""
        if self._thread is not None:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join()
            self._thread = None
        self._ready.clear()
