"""The `dysink inspect` PNG: collapse, drop, repeat, flicker and log curves stacked over time.

Drawn on a bare matplotlib `Figure` (Agg, no pyplot and no global backend state).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dysink_cli.errors import OutputError

if TYPE_CHECKING:
    from dysink_cli.diagnostics.report import BlockLog, Report


def _title(ax: Axes, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=9)


WAN_FRAMES_PER_LATENT = 4  # Wan's causal VAE: latent 0 decodes to 1 frame, each later latent to 4


class LogClock:
    """The log on the video's time axis, from the log's own fields: a block is drawn where it ends
    (`video_s`, else `frames_written` / fps); `start_frame` and retrieved frames are latent indices."""

    def __init__(self, blocks: list[BlockLog], video_fps: float | None) -> None:
        rates = [b.frames_written / b.video_s for b in blocks if b.frames_written and b.video_s]
        self.fps = rates[0] if rates else (video_fps or 1.0)  # 1.0: no rate known, the axis counts frames
        steps = [
            (b.frames_written - a.frames_written) / (b.start_frame - a.start_frame)
            for a, b in zip(blocks, blocks[1:], strict=False)
            if None not in (a.frames_written, b.frames_written, a.start_frame, b.start_frame)
            and b.start_frame > a.start_frame  # type: ignore[operator]
        ]
        self.frames_per_latent = float(np.median(steps)) if steps else float(WAN_FRAMES_PER_LATENT)

    def latent_s(self, latent: int) -> float:
        """Where latent frame `latent` starts in the video, in seconds."""
        k = self.frames_per_latent
        return (0.0 if latent <= 0 else k * latent - (k - 1)) / self.fps

    def block_end_s(self, block: BlockLog) -> float | None:
        if block.video_s is not None:
            return block.video_s
        if block.frames_written is not None:
            return block.frames_written / self.fps
        return None if block.start_frame is None else self.latent_s(block.start_frame)  # an old log


def _log_panels(report: Report) -> list[Callable[[Axes], None]]:
    """Plotters for the log's curves, each block drawn where it ends in the video; only keys present."""
    clock = LogClock(report.blocks or [], report.fps)
    placed = [(clock.block_end_s(b), b) for b in report.blocks or []]
    blocks = [(x, b) for x, b in placed if x is not None]
    ends = np.array([x for x, _ in blocks])
    width = 0.8 * float(np.median(np.diff(ends))) if len(ends) > 1 else 1.0 / clock.fps

    def series(name: str) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(x, getattr(b, name)) for x, b in blocks if getattr(b, name) is not None]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=np.float64)

    def has(*names: str) -> bool:
        return any(len(series(n)[0]) for n in names)

    def bank(ax: Axes) -> None:
        ax.step(*series("bank_size"), where="post", color="tab:purple", label="bank size")
        ax.set_ylabel("bank size")
        twin = ax.twinx()
        x, closures = series("gate_closures")
        twin.bar(x, closures, width=width, color="tab:red", alpha=0.5, label="gate closures")
        twin.set_ylabel("gate closures", color="tab:red")
        twin.yaxis.set_major_locator(MaxNLocator(integer=True))
        _title(ax, "Memory bank size and sink-gate closures per block")

    def retrieved(ax: Axes) -> None:
        xs = [x for x, b in blocks for _ in b.retrieved_frames or ()]
        ys = [clock.latent_s(f) for _, b in blocks for f in b.retrieved_frames or ()]
        ax.scatter(xs, ys, s=6, color="tab:green")
        ax.set_ylabel("retrieved (s)" if report.fps else "retrieved frame")
        _title(ax, "Frames retrieved from the bank (y: where the retrieved frame lies)")

    def speed(ax: Axes) -> None:
        ax.plot(*series("fps"), color="tab:blue", label="FPS")
        ax.set_ylabel("FPS")
        twin = ax.twinx()
        for name, color in (("gpu_mem_gb", "tab:orange"), ("rss_gb", "tab:brown")):
            twin.plot(*series(name), color=color, label=name)
        twin.set_ylabel("GB")
        twin.legend(loc="upper right", fontsize=7)
        _title(ax, "Throughput (FPS) and memory (GPU, RSS)")

    panels = []
    if has("bank_size", "gate_closures"):
        panels.append(bank)
    if any(b.retrieved_frames for _, b in blocks):
        panels.append(retrieved)
    if has("fps", "gpu_mem_gb", "rss_gb"):
        panels.append(speed)
    return panels


def write_png(report: Report, path: Path) -> None:
    """Stack collapse, drop, repeat, flicker (and log) curves over time into one PNG."""
    fig = build_figure(report)
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", "pass a writable -o path") from None


def build_figure(report: Report) -> Figure:
    """Collapse, drop, repeat, flicker (and log) panels over the video's time axis."""
    scale = 1.0 / report.fps if report.fps else 1.0
    t = np.arange(report.num_frames) * scale
    figures = report.collapse_figures

    def collapse(ax: Axes) -> None:
        ax.axvspan(0, (report.reference_frames - 1) * scale, color="0.85", label="reference frames")
        ax.plot(t, report.collapse.distance, color="tab:blue", label="RMS distance to nearest reference")
        ax.plot(t, report.collapse.peak, color="0.4", ls="--", lw=1, label="running peak")
        ax.axvline(figures.drop_max_frame * scale, color="tab:red", lw=1)
        ax.set_ylabel("distance")
        ax.legend(loc="upper left", fontsize=7)
        _title(ax, "Sink collapse: distance to the first block (0 = back at the start)")

    def drop(ax: Axes) -> None:
        ax.fill_between(t, report.collapse.drop_pct, color="tab:red", alpha=0.6)
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of peak")
        _title(
            ax,
            f"Drop below running peak: max {figures.drop_max:.1f}% "
            f"(frame {figures.drop_max_frame}), mean {figures.drop_mean:.1f}%",
        )

    def repeat(ax: Axes) -> None:
        ax.plot(t, report.repeat.distance, color="tab:green", label="nearest earlier frame")
        ax.axhline(report.repeat_threshold, color="0.4", ls="--", lw=1, label="threshold (median step)")
        hits = report.repeat.distance <= report.repeat_threshold
        ax.scatter(t[hits], report.repeat.distance[hits], s=6, color="tab:red", zorder=3, label="repeats")
        ax.set_ylabel("distance")
        ax.legend(loc="upper left", fontsize=7)
        _title(
            ax,
            f"Repeat: nearest frame >= {report.min_lag} frames back; score {report.repeat_score:.2f}",
        )

    def flicker(ax: Axes) -> None:
        ax.plot(t[1:], report.flicker_curve, color="tab:orange", lw=1)
        ax.set_ylabel("MAD 0..255")
        _title(
            ax,
            f"Flicker: mean |f(t+1) - f(t)| = {report.flicker:.2f} (VBench score {report.flicker_score:.4f})",
        )

    panels = [collapse, drop, repeat, flicker, *_log_panels(report)]
    fig = Figure(figsize=(11, 2.1 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        panel(ax)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)" if report.fps else "frame")
    fig.suptitle(f"{report.video.name}: {report.num_frames} frames, {report.size[0]}x{report.size[1]}")
    return fig
