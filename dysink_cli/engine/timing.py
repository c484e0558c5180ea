"""Per-stage wall time of the block loop (no printing). Imports nothing of dysink."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import torch


class StageTimer:
    """Milliseconds per named stage. On CUDA, events on the current stream mark the stage edges
    (no host sync inside the loop); pop() waits once per block and reads them. Nested stages are
    counted in both (e.g. "describe" inside "remember"). Stages on another stream (the overlapped
    decode) are not waited for: they count in the first pop after they finished."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.ms: dict[str, float] = defaultdict(float)
        self.events: list[tuple[str, torch.cuda.Event, torch.cuda.Event, torch.cuda.Stream]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.cuda:
            start_event, end_event = (
                torch.cuda.Event(enable_timing=True),
                torch.cuda.Event(enable_timing=True),
            )
            start_event.record()
            try:
                yield
            finally:
                end_event.record()
                self.events.append((name, start_event, end_event, torch.cuda.current_stream()))
            return
        start = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] += (time.perf_counter() - start) * 1000

    def pop(self) -> dict[str, float]:
        """The stages since the last pop (one block)."""
        if self.events:
            main = torch.cuda.current_stream()
            ours = [end for _, _, end, stream in self.events if stream == main]
            if ours:
                ours[-1].synchronize()
            pending = []
            for name, start_event, end_event, stream in self.events:
                if stream == main or end_event.query():
                    self.ms[name] += start_event.elapsed_time(end_event)
                else:
                    pending.append((name, start_event, end_event, stream))
            self.events = pending
        out, self.ms = dict(self.ms), defaultdict(float)
        return out


class NullTimer:
    """StageTimer's interface, measuring nothing (the default inside the engine)."""

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield

    def pop(self) -> dict[str, float]:
        return {}
