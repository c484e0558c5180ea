"""Deferred stop signals: the first Ctrl-C, SIGTERM or SIGHUP only sets a flag, so the block loop
finishes its block, checkpoints, closes ffmpeg and stops with `Interrupted`; a second one stops at
once. Outside the main thread it does nothing. Imports errors only."""

from __future__ import annotations

import signal
import threading
from typing import Any

from dysink_cli.errors import Interrupted

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)


class StopSignals:
    """Context manager: `received` holds the first signal number caught (0: none)."""

    def __init__(self) -> None:
        self.received = 0
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = self.received or signum
        for sig, previous in self._previous.items():  # a second signal acts at once
            signal.signal(sig, previous)
        self._previous = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handler) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def stop(self, output: str, block: int, saved: bool) -> Interrupted:
        """The error that ends the render after `block` blocks (saved: a checkpoint was written)."""
        name = signal.Signals(self.received).name
        how = f"dysink resume {output}" if saved else "run the same command again"
        return Interrupted(
            f"stopped by {name} after block {block}; the video written so far stays playable",
            f"continue with: {how}",
            signum=self.received,
        )
