"""Measurement helpers for the render loop: per-stage wall time and memory (no printing)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import torch


class StageTimer:
    """Accumulates milliseconds per named stage; syncs the GPU at stage edges so times are real."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.ms: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.cuda:
                torch.cuda.synchronize()
            self.ms[name] += (time.perf_counter() - start) * 1000

    def pop(self) -> dict[str, float]:
        """The stages since the last pop (one block)."""
        out, self.ms = dict(self.ms), defaultdict(float)
        return out


class NullTimer:
    """StageTimer's interface, measuring nothing (the default inside the engine)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def pop(self) -> dict[str, float]:
        return {}


class MemoryProbe:
    """Current and peak GPU memory (allocator) and host RSS, in GB."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.process = psutil.Process()
        self.peak_rss = 0.0

    def gpu_gb(self) -> float:
        return torch.cuda.memory_allocated() / 1e9 if self.cuda else 0.0

    def peak_gpu_gb(self) -> float:
        return torch.cuda.max_memory_allocated() / 1e9 if self.cuda else 0.0

    def rss_gb(self) -> float:
        rss = self.process.memory_info().rss / 1e9
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def peak_rss_gb(self) -> float:
        return max(self.peak_rss, self.rss_gb())
