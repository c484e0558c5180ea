"""Draw render events with rich: a bar per video (blocks, video seconds, FPS, ETA) and a stats line.

`RenderProgress` is the `on_event` callback handed to render(); --quiet keeps only warnings. Without
a terminal (a log file, CI) or with `live=False` (non-zero ranks of a batch) there are no bars: one
plain line per `PLAIN_EVERY_BLOCKS` blocks and `PLAIN_EVERY_S` seconds, whichever comes later (the
first after the first block). Imports render.events only (torch-free).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from dysink_cli.render.events import BlockDone, Event, Finished, Note, PromptSwitch, RenderStarted

PLAIN_EVERY_BLOCKS = 10
PLAIN_EVERY_S = 5.0


class _BarsWithStats(Progress):
    """rich Progress plus one live stats line under the bars."""

    stats: Text = Text("")

    def get_renderables(self) -> Any:
        yield self.make_tasks_table(self.tasks)
        if self.stats.plain:
            yield self.stats


def stats_line(stats: dict[str, Any]) -> Text:
    """BlockDone.stats -> 'bank 12 entries | retrieved 2 blocks | gate closed 3 | GPU 10.2 GB'"""
    parts: list[str] = []
    if "bank_size" in stats:
        parts.append(f"bank {stats['bank_size']} entries")
    retrieved = stats.get("retrieved_frames")
    if retrieved is not None:
        count = len(retrieved) if isinstance(retrieved, (list, tuple)) else retrieved
        parts.append(f"retrieved {count} blocks")
    if "gate_closures" in stats:
        parts.append(f"gate closed {stats['gate_closures']}")
    if stats.get("gpu_mem_gb"):
        parts.append(f"GPU {stats['gpu_mem_gb']:.1f} GB")
    if stats.get("rss_gb"):
        parts.append(f"host {stats['rss_gb']:.1f} GB")
    return Text(" | ".join(parts), style="dim")


class RenderProgress:
    """Callable event sink; use as a context manager around render() so the display is torn down."""

    def __init__(
        self,
        console: Console | None = None,
        *,
        quiet: bool = False,
        live: bool = True,
        prefix: str = "",
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet, self.live, self.prefix, self.clock = quiet, live, prefix, clock
        self._bars: _BarsWithStats | None = None
        self._tasks: dict[str, TaskID] = {}
        self._current: str | None = None
        self._started_at: dict[str, float] = {}
        self._duration_s: dict[str, float] = {}
        self._plain: _PlainLines | None = None

    def __enter__(self) -> RenderProgress:
        if self.live and not self.quiet and self.console.is_terminal:
            self._bars = _BarsWithStats(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("blocks  {task.fields[video]}  {task.fields[fps]}"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def print(self, renderable: RenderableType) -> None:
        (self._bars.console if self._bars else self.console).print(renderable)

    def __call__(self, event: Event) -> None:
        if isinstance(event, Note):
            if not self.quiet or event.level == "warning":
                style = "yellow" if event.level == "warning" else "cyan"
                self.print(Text.assemble((f"{self.prefix}{event.level}: ", style), event.message))
        elif self.quiet:
            return
        elif isinstance(event, RenderStarted):
            self._start(event)
        elif isinstance(event, PromptSwitch):
            where = f"block {event.block}: {event.effective_s:.2f} s (asked {event.requested_s:g} s)"
            self.print(Text(f"{self.prefix}prompt {event.segment + 1} at {where}: {event.prompt}"))
        elif isinstance(event, BlockDone):
            self._advance(event)
        elif isinstance(event, Finished):
            speed = event.frames_written / max(event.wall_s, 1e-9)
            text = f"{event.frames_written} frames = {event.seconds:.2f} s of video in {event.wall_s:.1f} s"
            self.print(Text(f"{self.prefix}wrote {event.output}: {text} ({speed:.1f} fps)", style="green"))

    def _start(self, event: RenderStarted) -> None:
        self._current = event.output
        self._started_at[event.output] = self.clock()
        self._duration_s[event.output] = event.duration_s
        if self._bars is None:
            self._plain = _PlainLines(event, self._started_at[event.output])
            self.print(
                Text(
                    f"{self.prefix}rendering {event.output}: {event.total_blocks} blocks, "
                    f"{event.video_frames} frames = {event.duration_s:.2f} s"
                )
            )
            return
        self._tasks[event.output] = self._bars.add_task(
            event.output,
            total=event.total_blocks,
            completed=event.first_block,
            video=f"0.0/{event.duration_s:.1f} s",
            fps="",
        )

    def _advance(self, event: BlockDone) -> None:
        if self._bars is None:
            line = self._plain.line(event, self.clock()) if self._plain is not None else None
            if line is not None:
                self.print(Text(f"{self.prefix}{line}"))
            return
        if self._current not in self._tasks:
            return
        elapsed = self.clock() - self._started_at[self._current]
        fps = event.stats.get("fps") or (event.frames_written / elapsed if elapsed > 0 else 0.0)
        video = f"{event.video_seconds_done:.1f}/{self._duration_s[self._current]:.1f} s"
        self._bars.update(
            self._tasks[self._current], completed=event.block + 1, video=video, fps=f"{fps:.1f} fps"
        )
        self._bars.stats = stats_line(event.stats)


def _clock_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class _PlainLines:
    """When the next plain progress line is due (for logs), and its text."""

    def __init__(self, event: RenderStarted, started_at: float) -> None:
        self.total, self.first, self.duration_s = event.total_blocks, event.first_block, event.duration_s
        self.started_at = started_at
        # frames an earlier run wrote (a resume): about first_block / total of the video
        self.frames_before = event.video_frames * event.first_block // max(event.total_blocks, 1)
        self.last: tuple[int, float] | None = None  # (blocks done, clock) at the last line

    def line(self, event: BlockDone, now: float) -> str | None:
        done = event.block + 1
        if self.last is not None:
            blocks_since, seconds_since = done - self.last[0], now - self.last[1]
            if blocks_since < PLAIN_EVERY_BLOCKS or seconds_since < PLAIN_EVERY_S:
                return None
        self.last = (done, now)
        elapsed = max(now - self.started_at, 1e-9)
        fps = (event.frames_written - self.frames_before) / elapsed
        eta = (self.total - done) * elapsed / max(done - self.first, 1)
        return (
            f"block {done}/{self.total} | {event.video_seconds_done:.1f}/{self.duration_s:.1f} s of video"
            f" | {fps:.1f} fps | ETA {_clock_text(eta)}"
        )
