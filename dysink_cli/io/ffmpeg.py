"""FfmpegSink: owns one ffmpeg process that turns uint8 RGB frames [T, H, W, 3] into a video file.

Kill safety, measured by tests/test_ffmpeg.py (imageio-ffmpeg 0.8.1, ffmpeg 9.0.2): .mp4 is fragmented
MP4 with a fragment per frame, .mkv is Matroska with a cluster per frame, and x264 runs zerolatency.
SIGKILL of renderer and ffmpeg together, 0.5 s after write() returned for 33 frames: 32 decode, in
.mp4 and .mkv, idle or mid-stream; the newest frame waits in the muxer for its successor or close().
SIGKILL of the renderer alone: ffmpeg (own session; Ctrl-C reaches only us) reads EOF and finishes
the file, 33 of 33. A plain MP4 killed so decodes 0 frames. zerolatency costs ~40% size at equal crf
on synthetic 832x480 content; low_latency=False keeps it playable but up to ~50 frames behind.
Also NullSink (benchmarks), probe_video and read_frames. Imports numpy and errors (no torch).
"""

from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dysink_cli.errors import FfmpegError, OutputError

CONTAINERS = {".mp4": "mp4", ".mkv": "matroska"}
_MP4_FLAGS = "+frag_every_frame+empty_moov+default_base_moof"


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary bundled with imageio-ffmpeg (or IMAGEIO_FFMPEG_EXE)."""
    try:
        import imageio_ffmpeg  # lazy: the engine and NullSink run without it (e.g. on a GPU box)

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        raise FfmpegError("imageio-ffmpeg is not installed", "pip install imageio-ffmpeg") from None
    except RuntimeError as err:
        raise FfmpegError(f"no ffmpeg binary found: {err}", "pip install imageio-ffmpeg") from None


def ffmpeg_version(exe: str | None = None) -> str:
    """First line of `ffmpeg -version`."""
    out = subprocess.run([exe or ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else f"unknown (exit code {out.returncode})"


def ffmpeg_encoders(exe: str | None = None) -> set[str]:
    """Names of the video encoders this ffmpeg was built with."""
    out = subprocess.run(
        [exe or ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
    )
    return {
        parts[1] for line in out.stdout.splitlines() if len(parts := line.split()) > 1 and parts[0][:1] == "V"
    }


def check_output_suffix(path: Path) -> None:
    if path.suffix.lower() not in CONTAINERS:
        raise OutputError(f"output {path} must end in .mp4 or .mkv", "rename it, e.g. -o video.mp4")


def codec_args(
    suffix: str,
    *,
    lossless: bool,
    crf: int,
    fps: int,
    low_latency: bool = True,
    encoders: set[str] | None = None,
) -> list[str]:
    """Encoder and container flags for an output suffix (see the module docstring for why)."""
    suffix = suffix.lower()
    container = ["-movflags", _MP4_FLAGS] if suffix == ".mp4" else ["-cluster_time_limit", "0"]
    tune = ["-tune", "zerolatency"] if low_latency else []
    if not lossless:
        codec = ["-c:v", "libx264", *tune, "-crf", str(crf), "-pix_fmt", "yuv420p"]
        return [*codec, "-g", str(2 * fps), *container]
    if suffix == ".mkv":
        return ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slicecrc", "1", "-pix_fmt", "bgr0", *container]
    if encoders is not None and "libx264rgb" not in encoders:
        raise FfmpegError("this ffmpeg has no libx264rgb encoder for a lossless .mp4", "write a .mkv (FFV1)")
    codec = ["-c:v", "libx264rgb", *tune, "-qp", "0", "-pix_fmt", "rgb24"]
    return [*codec, "-g", str(2 * fps), *container]


def as_frames(frames: Any, width: int, height: int) -> np.ndarray:
    """numpy or torch uint8 [T, H, W, 3] -> C-contiguous numpy array (checked against the sink's size)."""
    if hasattr(frames, "detach"):  # torch.Tensor, without importing torch here
        frames = frames.detach().to("cpu").numpy()
    arr = np.asarray(frames)
    if arr.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {arr.dtype}")
    if arr.ndim != 4 or arr.shape[1:] != (height, width, 3):
        raise ValueError(f"frames of shape {tuple(arr.shape)} do not match (T, {height}, {width}, 3)")
    return np.ascontiguousarray(arr)


class FfmpegSink:
    """Context manager: open() spawns ffmpeg, write() pipes frames, close() waits for a clean file."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: int,
        *,
        crf: int = 18,
        lossless: bool = False,
        overwrite: bool = False,
        low_latency: bool = True,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        check_output_suffix(self.path)
        self.width, self.height, self.fps = width, height, fps
        self.crf, self.lossless, self.overwrite, self.low_latency = crf, lossless, overwrite, low_latency
        self.metadata = dict(metadata or {})
        self.frames_written = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=20)
        self._drain: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running ffmpeg (None before open())."""
        return self._proc.pid if self._proc is not None else None

    def command(self, exe: str) -> list[str]:
        encoders = ffmpeg_encoders(exe) if self.lossless else None
        meta = [arg for key, value in self.metadata.items() for arg in ("-metadata", f"{key}={value}")]
        return [
            exe, "-hide_banner", "-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
            "-framerate", str(self.fps), "-i", "pipe:0", "-an",
            *codec_args(self.path.suffix, lossless=self.lossless, crf=self.crf, fps=self.fps,
                        low_latency=self.low_latency, encoders=encoders),
            *meta, "-flush_packets", "1", "-f", CONTAINERS[self.path.suffix.lower()],
            str(self.path.absolute()),  # absolute: a name that starts with "-" is never an option
        ]  # fmt: skip

    def open(self) -> FfmpegSink:
        if self._proc is not None:
            raise RuntimeError(f"sink for {self.path} is already open")
        if self.path.exists() and not self.overwrite:
            raise OutputError(f"{self.path} already exists", "pass --overwrite or pick another name")
        cmd = self.command(ffmpeg_exe())
        try:  # own session: Ctrl-C reaches only us, and we close ffmpeg cleanly
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            raise FfmpegError(
                f"cannot start ffmpeg ({cmd[0]}): {err}", "pip install imageio-ffmpeg"
            ) from None
        self._drain = threading.Thread(target=self._read_stderr, name="ffmpeg-stderr", daemon=True)
        self._drain.start()
        return self

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for line in iter(self._proc.stderr.readline, b""):
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _join_drain(self) -> None:
        assert self._proc is not None
        if self._drain is not None:
            self._drain.join(timeout=5)
        if self._proc.stderr is not None and not (self._drain and self._drain.is_alive()):
            self._proc.stderr.close()

    def write(self, frames: Any) -> None:
        """Pipe frames [T, H, W, 3] uint8 to ffmpeg and flush the pipe."""
        if self._proc is None or self._proc.stdin is None or self._proc.stdin.closed:
            raise RuntimeError(f"sink for {self.path} is not open")
        arr = as_frames(frames, self.width, self.height)
        try:
            self._proc.stdin.write(memoryview(arr).cast("B"))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("while writing") from None
        self.frames_written += arr.shape[0]

    def close(self) -> None:
        """Close stdin, wait for ffmpeg to finish the file; raise FfmpegError if it failed. Idempotent."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        proc.wait()
        self._join_drain()
        if proc.returncode != 0:
            raise self._failure("at close")

    def _failure(self, when: str) -> Exception:
        """ffmpeg died: reap it and turn its exit code and last stderr lines into an error."""
        assert self._proc is not None
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._join_drain()
        tail = " | ".join(list(self._stderr)[-3:]) or "no message"
        if "No space left" in tail:
            return OutputError(f"disk full writing {self.path}: {tail}", "free some space or write elsewhere")
        return FfmpegError(
            f"ffmpeg failed (exit code {code}) {when} {self.path}: {tail}",
            "check the output path and free disk space; rerun with --debug for details",
        )

    def __enter__(self) -> FfmpegSink:
        return self.open()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        try:  # keep the partial file playable, but do not mask the original error
            self.close()
        except Exception:  # noqa: BLE001
            pass


class NullSink:
    """FfmpegSink's interface without ffmpeg (benchmarks): checks and converts frames, then drops them."""

    def __init__(
        self, path: Path | None = None, width: int = 0, height: int = 0, fps: int = 16, **_: Any
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.width, self.height, self.fps = width, height, fps
        self.frames_written = 0

    def open(self) -> NullSink:
        return self

    def write(self, frames: Any) -> None:
        self.frames_written += as_frames(frames, self.width, self.height).shape[0]

    def close(self) -> None:
        return None

    def __enter__(self) -> NullSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def probe_video(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a video file, counted by ffmpeg (stream copy, no decode)."""
    if not Path(path).is_file():
        raise FfmpegError(f"video {path} does not exist", "check the path")
    try:
        import imageio_ffmpeg

        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, StopIteration) as err:
        raise FfmpegError(
            f"ffmpeg cannot read {path}: {str(err).splitlines()[0]}", "is it a video file?"
        ) from None
    width, height = meta["size"]
    return frames, width, height


def read_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as uint8 [H, W, 3] RGB arrays."""
    if not Path(path).is_file():
        raise FfmpegError(f"video {path} does not exist", "check the path")
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            width, height = next(reader)["size"]
        except (OSError, RuntimeError, StopIteration) as err:
            raise FfmpegError(
                f"ffmpeg cannot read {path}: {str(err).splitlines()[0]}", "is it a video file?"
            ) from None
        for raw in reader:
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
    finally:
        reader.close()
