"""FfmpegSink against the real ffmpeg from imageio-ffmpeg: frame counts, lossless, kill safety."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dysink_cli.errors import FfmpegError, OutputError
from dysink_cli.io.ffmpeg import FfmpegSink, NullSink, codec_args, probe_video, read_frames

W, H, FPS = 64, 48, 16


def smooth_frames(start: int, count: int) -> np.ndarray:
    """Moving gradients (compress well, so lossy round trips stay close)."""
    y, x = np.mgrid[0:H, 0:W]
    frames = [
        np.stack([(x * 4 + i * 3) % 256, (y * 5 + i) % 256, ((x + y) * 2) % 256], -1)
        for i in range(start, start + count)
    ]
    return np.stack(frames).astype(np.uint8)


@pytest.mark.parametrize(("suffix", "low_latency"), [(".mp4", True), (".mkv", True), (".mp4", False)])
def test_write_probe_and_read_back(tmp_path: Path, suffix: str, low_latency: bool) -> None:
    out = tmp_path / f"a{suffix}"
    with FfmpegSink(out, W, H, FPS, crf=10, low_latency=low_latency, metadata={"comment": "fox"}) as sink:
        sink.write(smooth_frames(0, 9))
        sink.write(torch.from_numpy(smooth_frames(9, 12)))  # torch input works too
    assert sink.frames_written == 21
    assert probe_video(out) == (21, W, H)
    frames = list(read_frames(out))
    assert len(frames) == 21 and frames[0].shape == (H, W, 3)
    err = np.abs(frames[5].astype(int) - smooth_frames(5, 1)[0].astype(int)).mean()
    assert err < 8


@pytest.mark.parametrize("name", ["-o.mp4", "-it's a vidéo.mkv", "two  spaces 'quoted'.mp4"])
def test_relative_names_with_dashes_quotes_and_unicode(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)  # a relative name that starts with "-" must not read as an option
    with FfmpegSink(Path(name), W, H, FPS) as sink:
        sink.write(smooth_frames(0, 5))
    assert probe_video(Path(name)) == (5, W, H) and len(list(read_frames(Path(name)))) == 5
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_lossless_round_trip_is_bit_exact(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (7, H, W, 3), dtype=np.uint8)
    out = tmp_path / f"l{suffix}"
    with FfmpegSink(out, W, H, FPS, lossless=True) as sink:
        sink.write(frames)
    back = np.stack(list(read_frames(out)))
    assert np.array_equal(back, frames)


def test_lossless_mp4_without_libx264rgb_says_use_mkv() -> None:
    with pytest.raises(FfmpegError, match="mkv"):
        codec_args(".mp4", lossless=True, crf=18, fps=FPS, encoders={"libx264", "ffv1"})


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "x.mp4"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        FfmpegSink(out, W, H, FPS).open()
    with FfmpegSink(out, W, H, FPS, overwrite=True) as sink:
        sink.write(smooth_frames(0, 3))
    assert probe_video(out)[0] == 3


def test_bad_suffix_and_bad_frames(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"\.mp4 or \.mkv"):
        FfmpegSink(tmp_path / "x.avi", W, H, FPS)
    sink = NullSink(None, W, H, FPS)
    with pytest.raises(ValueError, match="uint8"):
        sink.write(np.zeros((1, H, W, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, 48, 64, 3\)"):
        sink.write(np.zeros((1, W, H, 3), np.uint8))
    sink.write(smooth_frames(0, 4)[:, :, :, :])
    assert sink.frames_written == 4


def test_ffmpeg_failure_reports_exit_code_and_stderr(tmp_path: Path) -> None:
    sink = FfmpegSink(tmp_path / "missing-dir" / "x.mp4", W, H, FPS).open()
    with pytest.raises(FfmpegError, match=r"exit code \d+\).*No such file"):
        for i in range(50):
            sink.write(smooth_frames(i, 1))
            time.sleep(0.01)
        sink.close()


WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from dysink_cli.io.ffmpeg import FfmpegSink
{source}
sink = FfmpegSink(Path(sys.argv[1]), {w}, {h}, {fps}).open()
print(sink.pid, flush=True)
done = 0
for count in (9, 12, 12):  # three blocks of a 3-latent-frame model
    sink.write(smooth_frames(done, count))
    done += count
    print(done, flush=True)
while sys.argv[2] == "stream":  # keep going, one block every 20 ms, until killed
    time.sleep(0.02)
    sink.write(smooth_frames(done, 12))
    done += 12
time.sleep(60)
"""


def _start_writer(out: Path, mode: str = "pause") -> tuple[subprocess.Popen[str], int, int]:
    source = f"W, H = {W}, {H}\n" + inspect.getsource(smooth_frames)  # no torch import in the writer
    code = WRITER.format(source=source, w=W, h=H, fps=FPS)
    proc = subprocess.Popen([sys.executable, "-c", code, str(out), mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ffmpeg_pid = int(proc.stdout.readline())
    flushed = 0
    while flushed < 33:
        flushed = int(proc.stdout.readline())
    return proc, ffmpeg_pid, flushed


@pytest.mark.parametrize("mode", ["pause", "stream"])
@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_sigkill_of_renderer_and_ffmpeg_keeps_a_playable_file(tmp_path: Path, suffix: str, mode: str) -> None:
    """Kill both processes 0.5 s after 33 frames were written: idle ("pause") or mid-stream ("stream")."""
    out = tmp_path / f"killed{suffix}"
    proc, ffmpeg_pid, flushed = _start_writer(out, mode)
    time.sleep(0.5)
    os.kill(ffmpeg_pid, signal.SIGKILL)
    proc.kill()
    proc.communicate()
    frames = list(read_frames(out))
    # every frame but the newest (it waits in the muxer for its successor) is on disk
    print(f"{suffix} {mode}: {len(frames)} frames survived SIGKILL, {flushed} flushed 0.5 s before")
    assert len(frames) >= flushed - 1, f"{len(frames)} of {flushed} frames survived"
    assert probe_video(out)[1:] == (W, H)


def test_sigkill_of_renderer_alone_lets_ffmpeg_finish(tmp_path: Path) -> None:
    out = tmp_path / "orphan.mp4"
    proc, ffmpeg_pid, flushed = _start_writer(out)
    proc.kill()
    proc.communicate()
    deadline = time.monotonic() + 10
    count = 0
    while time.monotonic() < deadline:
        count = sum(1 for _ in read_frames(out))
        if count == flushed:
            break
        time.sleep(0.1)
    assert count == flushed
