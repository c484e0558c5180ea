"""FrameHandoff: decoded frames to the sink without holding up the GPU.

The block loop converts a block's frames to uint8 on the device and starts their copy into
pinned host memory; a writer thread waits for the copy and writes to the sink (ffmpeg's pipe),
while the GPU already works on the next block. At most `depth` blocks wait; a slower sink then
holds the loop back. The sink stays its opener's; only this thread writes to it until `flush()`.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import torch
from torch import Tensor


def to_uint8(frames: Tensor) -> Tensor:
    """(T, 3, H, W) in [-1, 1] -> (T, H, W, 3) uint8, rounded, on the frames' device."""
    pixels = ((frames.float().clamp(-1, 1) * 0.5 + 0.5) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous()


class FrameHandoff:
    """Owns the writer thread between the block loop and a sink (FfmpegSink, NullSink)."""

    def __init__(self, sink: Any, depth: int = 2) -> None:
        self.sink = sink
        self.frames_queued = 0
        self.first_written_at: float | None = None  # perf_counter() when frames first reached the sink
        self._queue: queue.Queue[tuple[Tensor, torch.cuda.Event | None] | None] = queue.Queue(depth)
        self._error: BaseException | None = None  # raised once in the loop's thread
        self._failed = False  # after a sink error nothing more is written
        self._thread = threading.Thread(target=self._drain, name="dysink-frames", daemon=True)
        self._thread.start()

    def put(self, frames: Tensor) -> None:
        """Queue frames (T, 3, H, W) in [-1, 1]; returns once their copy to the host is started."""
        self._raise()
        pixels = to_uint8(frames)
        ready = None
        if pixels.is_cuda:
            host = torch.empty(pixels.shape, dtype=torch.uint8, pin_memory=True)
            host.copy_(pixels, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record()
        else:
            host = pixels
        self._queue.put((host, ready))
        self.frames_queued += pixels.shape[0]

    def flush(self) -> None:
        """Wait until every queued frame is in the sink (before a checkpoint reads its count)."""
        self._queue.join()
        self._raise()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def __enter__(self) -> FrameHandoff:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()  # frames already decoded reach the file, also on Ctrl-C

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if not self._failed:
                    host, ready = item
                    if ready is not None:
                        ready.synchronize()
                    self.sink.write(host)
                    if self.first_written_at is None:
                        self.first_written_at = time.perf_counter()
            except BaseException as err:  # handed to the block loop at its next put/flush/close
                self._error, self._failed = err, True
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err
