"""Model-free long-video metrics on frame arrays (pure numpy, no I/O).

Frames are `[T, H, W, 3]`, uint8 in 0..255 or float in [0, 1]. Distances are RMS pixel
differences of downscaled frames: ||a - b||_2 / sqrt(h * w * 3), with values in [0, 1].
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_LONG_SIDE = 64
DEFAULT_REFERENCE_FRAMES = 9  # one 3-latent block decodes to 1 + 4 + 4 video frames
DEFAULT_MIN_LAG = 16  # one second at 16 FPS
DEFAULT_MIN_PEAK = 0.02  # RMS distance (about 5/255) below which no drop counts


class CollapseCurve(NamedTuple):
    """Per-frame sink-collapse curves, each `[T]`."""

    distance: np.ndarray  # d_t: RMS distance to the nearest reference frame
    peak: np.ndarray  # P_t = max_{s <= t} d_s
    drop_pct: np.ndarray  # 100 * (P_t - d_t) / P_t after the reference (0 elsewhere)


class CollapseFigures(NamedTuple):
    drop_max: float  # percent of the running peak
    drop_mean: float  # percent of the running peak
    drop_max_frame: int


class RepeatCurve(NamedTuple):
    """Per-frame nearest-earlier-frame curves, each `[T]`."""

    distance: np.ndarray  # RMS distance to the nearest frame >= min_lag earlier (NaN before)
    index: np.ndarray  # that frame's index (-1 before min_lag)


def to_unit(frames: np.ndarray) -> np.ndarray:
    """uint8 0..255 -> float32 in [0, 1]; float input is taken to be in [0, 1] already."""
    if frames.dtype == np.uint8:
        return frames.astype(np.float32) / np.float32(255.0)
    return frames.astype(np.float32, copy=False)


def _bin_edges(n_in: int, n_out: int) -> np.ndarray:
    return (np.arange(n_out + 1) * n_in) // n_out  # n_out bins of near-equal width


def downscale(frames: np.ndarray, long_side: int = DEFAULT_LONG_SIDE) -> np.ndarray:
    """Area-average `[..., H, W, 3]` to `long_side` px on the long side; float32 in [0, 1].

    Output rows/cols are round(H * long_side / max(H, W)) etc.; each output pixel is the mean
    of one rectangle of input pixels (bins of equal or near-equal width cover every pixel).
    Frames already at or under `long_side` are only converted, never upscaled.
    """
    if long_side < 1:
        raise ValueError(f"long_side must be >= 1, got {long_side}")
    height, width = frames.shape[-3], frames.shape[-2]
    scale = long_side / max(height, width)
    if scale >= 1.0:
        return to_unit(frames)
    out_h, out_w = max(1, round(height * scale)), max(1, round(width * scale))
    rows, cols = _bin_edges(height, out_h), _bin_edges(width, out_w)
    x = np.add.reduceat(frames, rows[:-1], axis=-3, dtype=np.float32)  # (..., out_h, W, 3)
    x = np.add.reduceat(x, cols[:-1], axis=-2)  # (..., out_h, out_w, 3)
    counts = np.diff(rows)[:, None, None] * np.diff(cols)[None, :, None]  # (out_h, out_w, 1)
    divisor = counts * (255.0 if frames.dtype == np.uint8 else 1.0)
    return (x / divisor.astype(np.float32)).astype(np.float32)


def _flat(frames: np.ndarray) -> np.ndarray:
    return to_unit(frames).reshape(len(frames), -1)  # (T, D)


def rms_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS difference over the last three axes (H, W, 3), broadcasting the rest."""
    diff = to_unit(a) - to_unit(b)
    return np.sqrt(np.mean(diff * diff, axis=(-3, -2, -1)))


def step_curve(frames: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """RMS distance of each frame to the previous one, `[T - 1]`."""
    x = to_unit(frames)
    steps = np.zeros(max(len(x) - 1, 0))
    for start in range(1, len(x), chunk):
        stop = min(start + chunk, len(x))
        steps[start - 1 : stop - 1] = rms_distance(x[start:stop], x[start - 1 : stop - 1])
    return steps


def collapse_curve(
    frames: np.ndarray,
    reference_frames: int = DEFAULT_REFERENCE_FRAMES,
    min_peak: float = DEFAULT_MIN_PEAK,
    chunk: int = 256,
) -> CollapseCurve:
    """Sink-collapse curve after LoL §3 / Fig. 2 (distance to the sink frames over time).

    d_t = min over the first `reference_frames` frames r of RMS(f_t - r) (nearest reference
    frame, so a return to any frame of the first block reads as ~0); P_t = max_{s<=t} d_s;
    drop_pct_t = 100 * (P_t - d_t) / P_t for t >= reference_frames with P_t >= min_peak, else 0:
    how far, as a percentage of the farthest it had got, the video has fallen back to its start.
    """
    if not 1 <= reference_frames < len(frames):
        raise ValueError(f"reference_frames must be in [1, {len(frames) - 1}], got {reference_frames}")
    x = to_unit(frames)
    refs = x[:reference_frames]  # (N, H, W, 3)
    distance = np.empty(len(x), dtype=np.float64)
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk, None]  # (C, 1, H, W, 3)
        distance[start : start + len(block)] = rms_distance(block, refs[None]).min(axis=1)
    peak = np.maximum.accumulate(distance)
    drop_pct = np.zeros_like(distance)
    valid = peak >= min_peak
    valid[:reference_frames] = False
    drop_pct[valid] = 100.0 * (peak[valid] - distance[valid]) / peak[valid]
    return CollapseCurve(distance, peak, drop_pct)


def collapse_figures(curve: CollapseCurve, reference_frames: int) -> CollapseFigures:
    """Sink-Collapse Max / Avg (LoL Table 1 style): max and mean of drop_pct_t, t >= N."""
    after = curve.drop_pct[reference_frames:]
    worst = int(np.argmax(after))
    return CollapseFigures(float(after[worst]), float(after.mean()), worst + reference_frames)


def repeat_curve(frames: np.ndarray, min_lag: int = DEFAULT_MIN_LAG, chunk: int = 512) -> RepeatCurve:
    """Nearest earlier frame at least `min_lag` back (the RIFLEx no-repeat idea, in pixels).

    For t >= min_lag: n_t = min over s <= t - min_lag of RMS(f_t - f_s). Candidates are ranked
    with a chunked Gram matrix (O(T^2 D)); the winner's distance is then computed exactly.
    """
    if min_lag < 1:
        raise ValueError(f"min_lag must be >= 1, got {min_lag}")
    x = _flat(frames)  # (T, D)
    total = len(x)
    norms = np.einsum("td,td->t", x, x)  # (T,)
    distance = np.full(total, np.nan)
    index = np.full(total, -1, dtype=np.int64)
    for start in range(min_lag, total, chunk):
        stop = min(start + chunk, total)
        cands = stop - min_lag  # frames 0 .. stop - min_lag - 1 can be candidates
        sq = norms[start:stop, None] + norms[None, :cands] - 2.0 * (x[start:stop] @ x[:cands].T)
        rows = np.arange(start, stop)[:, None]  # (C, 1)
        sq[np.arange(cands)[None, :] > rows - min_lag] = np.inf
        best = np.argmin(sq, axis=1)  # (C,)
        index[start:stop] = best
        diff = x[start:stop] - x[best]  # (C, D)
        distance[start:stop] = np.sqrt(np.mean(diff * diff, axis=1))
    return RepeatCurve(distance, index)


def repeat_score(curve: RepeatCurve, steps: np.ndarray, ratio: float = 1.0) -> tuple[float, float]:
    """Fraction of frames (t >= min_lag) whose nearest earlier frame is within the threshold.

    threshold = ratio * median(steps), the typical consecutive-frame RMS distance: a frame
    repeats when some frame >= min_lag back is as close to it as its own predecessor usually
    is. Loops and rewinds score near 1, steady drift near 0. Returns (score, threshold);
    score is NaN when the video is not longer than min_lag.
    """
    threshold = ratio * float(np.median(steps)) if len(steps) else 0.0
    measured = curve.distance[~np.isnan(curve.distance)]
    if len(measured) == 0:
        return float("nan"), threshold
    return float(np.mean(measured <= threshold)), threshold


def frame_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two frames on the 0..255 scale (VBench `calculate_mae`)."""
    scale = 1.0 if a.dtype == np.uint8 else 255.0
    return float(np.mean(np.abs(a.astype(np.float32) - b.astype(np.float32)))) * scale


def flicker_curve(frames: np.ndarray) -> np.ndarray:
    """Per-pair mean |f_{t+1} - f_t| on 0..255, `[T - 1]` (VBench temporal flickering)."""
    return np.array([frame_mad(frames[t + 1], frames[t]) for t in range(len(frames) - 1)])


def flicker_figures(curve: np.ndarray) -> tuple[float, float]:
    """(mean MAD on 0..255, VBench score (255 - MAD) / 255) from a flicker curve."""
    if len(curve) == 0:
        return float("nan"), float("nan")
    mad = float(np.mean(curve))
    return mad, (255.0 - mad) / 255.0


def flicker(frames: np.ndarray) -> tuple[float, float]:
    """VBench temporal flickering of a frame array: (MAD on 0..255, (255 - MAD) / 255)."""
    return flicker_figures(flicker_curve(frames))
