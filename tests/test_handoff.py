"""FrameHandoff: frames reach the sink in order, off the loop's thread; sink errors come back."""

from __future__ import annotations

import threading

import pytest
import torch

from dysink_cli.io.handoff import FrameHandoff, to_uint8


class RecordingSink:
    def __init__(self, fail_at: int | None = None) -> None:
        self.frames_written = 0
        self.blocks: list[torch.Tensor] = []
        self.threads: set[str] = set()
        self.fail_at = fail_at

    def write(self, frames: torch.Tensor) -> None:
        if self.fail_at is not None and len(self.blocks) == self.fail_at:
            raise OSError("ffmpeg exited")
        self.threads.add(threading.current_thread().name)
        self.blocks.append(frames.clone())
        self.frames_written += frames.shape[0]


def block(i: int) -> torch.Tensor:
    return torch.linspace(-1, 1, 4 * 3 * 2 * 5).reshape(4, 3, 2, 5) * (i + 1) / 8


def test_to_uint8_rounds_and_moves_channels_last():
    frames = torch.tensor([-1.0, -0.5, 0.0, 1.0, 2.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = to_uint8(frames)
    assert out.shape == (1, 1, 5, 3) and out.dtype == torch.uint8
    assert out[0, 0, :, 0].tolist() == [0, 64, 128, 255, 255]  # round(63.75), round(127.5), clamp


def test_frames_arrive_in_order_and_flush_makes_the_count_exact():
    sink = RecordingSink()
    with FrameHandoff(sink, depth=2) as handoff:
        for i in range(6):
            handoff.put(block(i))
        assert handoff.frames_queued == 24
        handoff.flush()
        assert sink.frames_written == 24
    assert [b.tolist() for b in sink.blocks] == [to_uint8(block(i)).tolist() for i in range(6)]
    assert sink.threads == {"dysink-frames"}


def test_a_sink_error_reaches_the_block_loop():
    sink = RecordingSink(fail_at=1)
    handoff = FrameHandoff(sink)
    handoff.put(block(0))
    handoff.put(block(1))
    with pytest.raises(OSError, match="ffmpeg exited"):
        handoff.flush()
    handoff.put(block(2))  # later frames are dropped, not written after the failure
    handoff.close()
    assert len(sink.blocks) == 1


def test_first_write_time_is_recorded():
    sink = RecordingSink()
    with FrameHandoff(sink) as handoff:
        assert handoff.first_written_at is None
        handoff.put(block(0))
        handoff.flush()
        first = handoff.first_written_at
        handoff.put(block(1))
    assert first is not None and handoff.first_written_at == first
