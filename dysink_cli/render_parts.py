"""Pieces of the render loop: the decoder-state owner, descriptors, frame conversion, the per-block
log record, and deferred Ctrl-C (the first one finishes the block and checkpoints)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from dysink_cli.engine.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.models import Models
from dysink_cli.stats import MemoryProbe, StageTimer


@dataclass
class Decoder:
    """Owns the streaming VAE decoder state. Each block's latents are decoded once: the writer and
    the shared-descriptor path both ask `frames_of(latents)`, whichever comes first decodes."""

    vae: Any
    state: Any
    last: tuple[Tensor, Tensor] | None = None  # (latents, their frames) of the last decode

    def frames_of(self, latents: Tensor) -> Tensor:
        """Frames of the block `latents`, decoded with the persistent state (equal to a whole decode)."""
        if self.last is not None and self.last[0] is latents:
            return self.last[1]
        frames, self.state = self.vae.decode_chunk(latents, self.state)
        self.last = (latents, frames)
        return frames


def make_describer(
    models: Models, decoder: Decoder, mode: str, timer: StageTimer
) -> Callable[[Tensor], Tensor]:
    """Block latents -> L2-normalised PE-Core descriptor: a standalone 9-frame decode (reference)
    or the streamed frames ("shared": one decode per block instead of two)."""
    assert models.pe is not None

    def describe(latents: Tensor) -> Tensor:
        with timer.stage("describe"):
            if mode == "shared":
                frames = decoder.frames_of(latents)
            else:
                frames = models.vae.decode(latents)
            return describe_frames(frames_for_descriptor(frames)[0], models.pe)

    return describe


class InterruptFlag:
    """Context manager: the first Ctrl-C only sets `raised` (the loop checkpoints, then stops);
    a second one interrupts at once. Outside the main thread it does nothing."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.raised = True
        signal.signal(signal.SIGINT, self._previous)

    def __enter__(self) -> InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def block_stats(
    record: dict[str, Any],
    ms: dict[str, float],
    probe: MemoryProbe,
    frames_written: int,
    started: float,
    fps: int,
) -> dict[str, Any]:
    """The per-block JSON record of --log-json (see engine/events.py BlockDone)."""
    elapsed = time.perf_counter() - started
    retrieval = record.get("retrieval") or {}
    closures = sum(e["gated_off"] for g in record.get("gate", []) for e in g["entries"])
    return {
        "block": record["block"],
        "start_frame": record["start_frame"],
        "time_s": round(elapsed, 4),
        "frames_written": frames_written,
        "video_s": frames_written / fps,
        "window_frames": record.get("effective_local_attn_frames"),
        "bank_size": record.get("bank_size_after_block", 0),
        "retrieved_frames": retrieval.get("retrieved_frames", []),
        "gate_closures": closures,
        "dedup_added": (record.get("dedup") or {}).get("added_to_bank"),
        "gpu_mem_gb": probe.gpu_gb(),
        "rss_gb": probe.rss_gb(),
        "fps": frames_written / elapsed if elapsed > 0 else 0.0,
        "ms": {k: round(v, 2) for k, v in ms.items()},
    }
