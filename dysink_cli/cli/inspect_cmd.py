"""`dysink inspect`: model-free diagnostics of a rendered video (and its render log).

A thin face over diagnostics/: the plot (matplotlib) loads only once the video is measured.
Imports cli.errors and diagnostics.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from dysink_cli.cli.errors import cli_errors
from dysink_cli.cli.render_cmd import DebugOpt
from dysink_cli.diagnostics import metrics
from dysink_cli.errors import OutputError

if TYPE_CHECKING:  # the report reads videos through imageio-ffmpeg: loaded by the command only
    from dysink_cli.diagnostics.report import Report


def _fmt(value: float | None, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, float) else str(value)


def _table(report: Report, png: Path) -> Table:
    fig = report.collapse_figures
    table = Table(title=f"{report.video.name}: {report.num_frames} frames", title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    table.add_row(
        "sink-collapse max",
        f"{fig.drop_max:.1f}%",
        f"largest fall back toward the first block (frame {fig.drop_max_frame})",
    )
    table.add_row(
        "sink-collapse avg",
        f"{fig.drop_mean:.1f}%",
        "mean fall below the running peak, after the reference",
    )
    table.add_row(
        "repeat score",
        _fmt(report.repeat_score, ".2f"),
        f"frames matching a frame >= {report.min_lag} back (0 drift, 1 loop)",
    )
    table.add_row("flicker", f"{report.flicker:.2f}", "mean |f(t+1) - f(t)| on 0..255")
    table.add_row("flicker score", f"{report.flicker_score:.4f}", "VBench (255 - flicker) / 255")
    if report.blocks is not None:
        from dysink_cli.diagnostics.report import log_summary

        summary = log_summary(report.blocks)
        rows = (
            ("blocks logged", _fmt(summary["blocks"]), ""),
            (
                "bank size",
                f"{_fmt(summary['bank_size_last'])} (max {_fmt(summary['bank_size_max'])})",
                "last / largest",
            ),
            (
                "retrieved / block",
                _fmt(summary["retrieved_per_block"], ".1f"),
                "mean frames retrieved",
            ),
            (
                "gate closures",
                _fmt(summary["gate_closures_total"]),
                f"in {_fmt(summary['blocks_with_gate_closures'])} blocks",
            ),
            ("FPS", _fmt(summary["fps_mean"], ".2f"), "mean over blocks"),
            ("GPU memory", f"{_fmt(summary['gpu_mem_gb_max'], '.2f')} GB", "peak"),
            ("RSS", f"{_fmt(summary['rss_gb_max'], '.2f')} GB", "peak"),
        )
        for row in rows:
            table.add_row(*row)
        for stage, ms in (summary["ms_mean"] or {}).items():
            table.add_row(f"ms {stage}", f"{ms:.1f}", "mean per block")
    table.caption = f"report: {png}"
    return table


def check_png(png: Path) -> None:
    """The report PNG can be written: not a folder, in a folder that exists."""
    if png.is_dir():
        raise OutputError(f"-o {png} is a folder", "pass a file name, e.g. -o report.png")
    if not png.parent.is_dir():
        raise OutputError(
            f"folder {png.parent} for -o does not exist", f"create it first: mkdir -p {png.parent}"
        )


def inspect_command(
    video: Annotated[Path, typer.Argument(help="Rendered video (any format ffmpeg reads).")],
    log: Annotated[
        Path | None, typer.Option("--log", help="The render's --log-json file (JSON lines).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="PNG to write (default: VIDEO.inspect.png next to the video)."),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the figures and curves as one JSON object.")
    ] = False,
    reference_frames: Annotated[
        int,
        typer.Option(
            "--reference-frames",
            min=1,
            help="Sink collapse: frames of the first block (one 3-latent block = 1+4+4 = 9).",
        ),
    ] = metrics.DEFAULT_REFERENCE_FRAMES,
    min_lag: Annotated[
        int,
        typer.Option(
            "--min-lag",
            min=1,
            help="Repeat score: compare only with frames at least this many back.",
        ),
    ] = metrics.DEFAULT_MIN_LAG,
    debug: DebugOpt = False,
) -> None:
    """Diagnose a long video without model weights: sink collapse, repetition, flicker.

    Frames are area-averaged to 64 px on the long side, as floats in [0, 1]. A distance is
    the RMS pixel difference ||a - b||_2 / sqrt(h*w*3), in [0, 1].

    Sink collapse (after LoL): d_t = distance of frame t to the nearest of the first
    --reference-frames frames; P_t = max of d_s for s <= t (running peak);
    drop_t = 100 * (P_t - d_t) / P_t, in percent of the running peak (0 while P_t < 0.02).
    Sink-collapse max / avg = max / mean of drop_t over the frames after the reference.
    100% means the video went back exactly to its first block; steady drift gives ~0%.

    Repeat score (RIFLEx no-repeat idea): n_t = distance from frame t to its nearest frame
    at least --min-lag frames earlier; the score is the fraction of frames t >= --min-lag
    with n_t <= the median consecutive-frame distance. Loops score near 1, drift near 0.

    Flicker (VBench temporal flickering): mean over consecutive pairs of mean |f(t+1) - f(t)|
    on full-resolution 0..255 pixels; score = (255 - flicker) / 255.

    The log adds bank size, retrieved frames, gate closures, FPS and memory per block.
    """
    png = output if output is not None else video.with_suffix(".inspect.png")
    status = Console(stderr=True)
    with cli_errors(debug):
        from dysink_cli.diagnostics.report import analyze, report_to_json

        check_png(png)  # before the decode, which can take minutes
        if json_out or not status.is_terminal:
            report = analyze(video, log, reference_frames, min_lag)
        else:
            with status.status("decoding") as spinner:

                def on_frame(n: int) -> None:
                    if n % 100 == 0:
                        spinner.update(f"decoding frame {n}")

                report = analyze(video, log, reference_frames, min_lag, on_frame=on_frame)
        from dysink_cli.diagnostics.plot import write_png  # matplotlib loads here

        write_png(report, png)
    if json_out:
        typer.echo(json.dumps({**report_to_json(report), "png": str(png)}))
    else:
        Console().print(_table(report, png))
