"""Stream a rendered video (and its `--log-json` log) into a `Report`; its JSON form.

Frames are decoded one at a time through imageio-ffmpeg; only the downscaled frames (and the
previous full frame, for flicker) stay in memory. No model weights are used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from dysink_cli.config import read_text
from dysink_cli.diagnostics import metrics
from dysink_cli.errors import ConfigError

__all__ = [
    "BlockLog",
    "Report",
    "analyze",
    "log_summary",
    "read_log",
    "report_to_json",
]

_INT_KEYS = ("block", "start_frame", "frames_written", "bank_size", "gate_closures")
_FLOAT_KEYS = ("time_s", "video_s", "gpu_mem_gb", "rss_gb", "fps")


@dataclass(frozen=True)
class BlockLog:
    """One line of a render log; a key missing from the line is None."""

    block: int | None = None
    start_frame: int | None = None  # a latent frame index (the VAE makes ~4 video frames of each)
    time_s: float | None = None
    frames_written: int | None = None  # video frames written when the block was done
    video_s: float | None = None  # seconds of video written when the block was done
    bank_size: int | None = None
    retrieved_frames: tuple[int, ...] | None = None
    gate_closures: int | None = None
    gpu_mem_gb: float | None = None
    rss_gb: float | None = None
    fps: float | None = None
    ms: dict[str, float] | None = None


@dataclass(frozen=True)
class Report:
    """Everything `dysink inspect` measured on one video; curves are `[T]` unless noted."""

    video: Path
    num_frames: int
    fps: float | None
    size: tuple[int, int]  # (W, H) as decoded
    analysis_size: tuple[int, int]  # (w, h) after downscaling
    reference_frames: int
    min_lag: int
    collapse: metrics.CollapseCurve
    collapse_figures: metrics.CollapseFigures
    repeat: metrics.RepeatCurve
    repeat_score: float
    repeat_threshold: float
    steps: np.ndarray  # [T - 1] consecutive RMS distances
    flicker_curve: np.ndarray  # [T - 1] on 0..255, full resolution
    flicker: float
    flicker_score: float
    blocks: list[BlockLog] | None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_ints(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) for v in value)


def _is_stage_ms(value: Any) -> bool:
    return isinstance(value, dict) and all(_is_number(v) for v in value.values())


# key -> (accepts the JSON value, converts it)
_LOG_KEYS: dict[str, tuple[Callable[[Any], bool], Callable[[Any], Any]]] = {
    **{key: (_is_int, int) for key in _INT_KEYS},
    **{key: (_is_number, float) for key in _FLOAT_KEYS},
    "retrieved_frames": (_is_ints, tuple),
    "ms": (_is_stage_ms, lambda v: {str(k): float(x) for k, x in v.items()}),
}


def _parse_block(obj: dict[str, Any], where: str) -> BlockLog:
    values: dict[str, Any] = {}
    for key, (accepts, convert) in _LOG_KEYS.items():
        value = obj.get(key)
        if value is None:
            continue
        if not accepts(value):
            raise ConfigError(
                f"{where}: key {key!r} has a bad value {repr(value)[:60]}",
                "the log must come from `dysink render --log-json`",
            )
        values[key] = convert(value)
    return BlockLog(**values)


def read_log(path: Path) -> list[BlockLog]:
    """Parse a JSON-lines render log; blank lines are skipped, unknown keys ignored."""
    text = read_text(Path(path), "log", ConfigError)
    blocks = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}, line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} is not valid JSON ({exc.msg})", "fix or delete that line") from None
        if not isinstance(obj, dict):
            raise ConfigError(f"{where} is not a JSON object", "fix or delete that line")
        blocks.append(_parse_block(obj, where))
    return blocks


def _ffmpeg_reason(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def _read_video(
    path: Path, long_side: int, on_frame: Callable[[int], None] | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Decode `path` once: (downscaled [T, h, w, 3] float32, flicker [T - 1], ffmpeg meta)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    small: list[np.ndarray] = []
    flicker: list[float] = []
    try:
        meta = next(reader)
        width, height = meta["size"]
        previous = None
        for raw in reader:
            frame = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)  # (H, W, 3)
            small.append(metrics.downscale(frame, long_side))
            if previous is not None:
                flicker.append(metrics.frame_mad(frame, previous))
            previous = frame
            if on_frame is not None:
                on_frame(len(small))
    except (OSError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot read video {path}: {_ffmpeg_reason(exc)}",
            "pass a video that ffmpeg can decode",
        ) from None
    finally:
        reader.close()
    if not small:
        raise ConfigError(f"video {path} has no frames", "pass a rendered video")
    return np.stack(small), np.asarray(flicker, dtype=np.float64), meta


def analyze(
    video_path: Path,
    log_path: Path | None = None,
    reference_frames: int = metrics.DEFAULT_REFERENCE_FRAMES,
    min_lag: int = metrics.DEFAULT_MIN_LAG,
    long_side: int = metrics.DEFAULT_LONG_SIDE,
    on_frame: Callable[[int], None] | None = None,
) -> Report:
    """Measure sink collapse, repetition and flicker of a video; attach its render log if given.

    `on_frame(n)` is called after each decoded frame (progress). Bad arguments, an unreadable
    video or log, and a video no longer than the reference block raise ConfigError.
    """
    # 1. Check arguments and read the (small) log first, so a bad log fails fast.
    if reference_frames < 1 or min_lag < 1 or long_side < 1:
        raise ConfigError(
            f"reference_frames={reference_frames}, min_lag={min_lag}, long_side={long_side}",
            "each must be at least 1",
        )
    video_path = Path(video_path)
    if video_path.is_dir():
        raise ConfigError(f"video {video_path} is a folder, not a file", "pass the path of a rendered video")
    if not video_path.is_file():
        raise ConfigError(f"video {video_path} does not exist", "pass the path of a rendered video")
    blocks = read_log(Path(log_path)) if log_path is not None else None

    # 2. Decode once, keeping downscaled frames and the full-resolution flicker curve.
    small, flicker_curve, meta = _read_video(video_path, long_side, on_frame)
    if len(small) <= reference_frames:
        raise ConfigError(
            f"video {video_path} has {len(small)} frames; "
            f"--reference-frames {reference_frames} leaves none to measure",
            "lower --reference-frames or pass a longer video",
        )

    # 3. Metrics.
    collapse = metrics.collapse_curve(small, reference_frames)
    repeat = metrics.repeat_curve(small, min_lag)
    steps = metrics.step_curve(small)
    score, threshold = metrics.repeat_score(repeat, steps)
    mad, flicker_score = metrics.flicker_figures(flicker_curve)
    fps = meta.get("fps")
    return Report(
        video=video_path,
        num_frames=len(small),
        fps=float(fps) if fps and math.isfinite(fps) else None,
        size=(int(meta["size"][0]), int(meta["size"][1])),
        analysis_size=(small.shape[2], small.shape[1]),
        reference_frames=reference_frames,
        min_lag=min_lag,
        collapse=collapse,
        collapse_figures=metrics.collapse_figures(collapse, reference_frames),
        repeat=repeat,
        repeat_score=score,
        repeat_threshold=threshold,
        steps=steps,
        flicker_curve=flicker_curve,
        flicker=mad,
        flicker_score=flicker_score,
        blocks=blocks,
    )


def log_summary(blocks: list[BlockLog]) -> dict[str, Any]:
    """Totals over a render log: None where no block carried the key."""

    def present(name: str) -> list[Any]:
        return [getattr(b, name) for b in blocks if getattr(b, name) is not None]

    def agg(name: str, fn: Callable[[list[Any]], Any]) -> Any:
        values = present(name)
        return fn(values) if values else None

    stages: dict[str, list[float]] = {}
    for ms in present("ms"):
        for stage, value in ms.items():
            stages.setdefault(stage, []).append(value)
    return {
        "blocks": len(blocks),
        "bank_size_last": agg("bank_size", lambda v: v[-1]),
        "bank_size_max": agg("bank_size", max),
        "retrieved_per_block": agg("retrieved_frames", lambda v: float(np.mean([len(r) for r in v]))),
        "gate_closures_total": agg("gate_closures", sum),
        "blocks_with_gate_closures": agg("gate_closures", lambda v: sum(1 for c in v if c > 0)),
        "fps_mean": agg("fps", lambda v: float(np.mean(v))),
        "gpu_mem_gb_max": agg("gpu_mem_gb", max),
        "rss_gb_max": agg("rss_gb", max),
        "ms_mean": {stage: float(np.mean(v)) for stage, v in stages.items()} or None,
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy -> Python, floats rounded to 6 decimals."""
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 6) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def report_to_json(report: Report) -> dict[str, Any]:
    """The report as one JSON-safe dict: headline figures, per-frame curves, log."""
    figures = report.collapse_figures
    log = None
    if report.blocks is not None:
        log = {
            "summary": log_summary(report.blocks),
            "blocks": [{f.name: getattr(b, f.name) for f in fields(b)} for b in report.blocks],
        }
    return _clean(
        {
            "video": str(report.video),
            "frames": report.num_frames,
            "fps": report.fps,
            "size": report.size,
            "analysis_size": report.analysis_size,
            "reference_frames": report.reference_frames,
            "min_lag": report.min_lag,
            "collapse_drop_max": figures.drop_max,
            "collapse_drop_mean": figures.drop_mean,
            "collapse_drop_max_frame": figures.drop_max_frame,
            "repeat_score": report.repeat_score,
            "repeat_threshold": report.repeat_threshold,
            "flicker": report.flicker,
            "flicker_score": report.flicker_score,
            "curves": {
                "collapse_distance": report.collapse.distance,
                "collapse_peak": report.collapse.peak,
                "collapse_drop_pct": report.collapse.drop_pct,
                "repeat_distance": report.repeat.distance,
                "repeat_index": [int(i) if i >= 0 else None for i in report.repeat.index],
                "step_distance": report.steps,
                "flicker": report.flicker_curve,
            },
            "log": log,
        }
    )
