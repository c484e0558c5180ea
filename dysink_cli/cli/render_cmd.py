"""`dysink render`: one video from a prompt or a timeline; also the options render, batch and resume share.

Imports cli.options, cli.progress, errors and timeline; render() itself only when it runs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from dysink_cli.cli.errors import cli_errors
from dysink_cli.cli.options import RenderOptions, build_job, check_device, parse_seconds, start_frames
from dysink_cli.cli.progress import RenderProgress
from dysink_cli.errors import ConfigError
from dysink_cli.timeline import Timeline, plan_frames

PresetOpt = Annotated[
    str | None, typer.Option("--preset", help="Preset name (`dysink presets`) or a .toml path.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Config override key=value, e.g. dysink.top_k=3 (repeatable)."),
]
WeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="Weights folder (else $DYSINK_WEIGHTS, else the preset's)."),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")]
FpsOpt = Annotated[int | None, typer.Option("--fps", help="Output frame rate (output.fps).")]
CrfOpt = Annotated[
    int | None, typer.Option("--crf", help="x264 quality 0..51 (output.crf); lower is better.")
]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
LosslessOpt = Annotated[
    bool, typer.Option("--lossless", help="Lossless: FFV1 for .mkv, x264 RGB qp 0 for .mp4.")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress display; errors and warnings only.")
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


def _timeline(prompt: str | None, timeline: Path | None) -> Timeline:
    if (prompt is None) == (timeline is None):
        raise ConfigError(
            "pass either --prompt or --timeline" if prompt is None else "--prompt and --timeline both given",
            'use --prompt "..." for one prompt, or --timeline FILE.toml for prompts over time',
        )
    return Timeline.load(timeline) if timeline is not None else Timeline.from_prompt(prompt or "")


def render_command(
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="What the video shows.")] = None,
    seconds: Annotated[
        str | None, typer.Option("--seconds", "-s", metavar="SECONDS", help="Video length.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output .mp4 or .mkv file.")] = None,
    preset: PresetOpt = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default 0).")] = None,
    weights: WeightsOpt = None,
    device: DeviceOpt = "auto",
    fps: FpsOpt = None,
    crf: CrfOpt = None,
    sets: SetOpt = None,
    timeline: Annotated[
        Path | None, typer.Option("--timeline", help="Timeline TOML: prompts over time (see README).")
    ] = None,
    overwrite: OverwriteOpt = False,
    lossless: LosslessOpt = False,
    log_json: Annotated[
        Path | None, typer.Option("--log-json", help="Write one JSON line per block.")
    ] = None,
    decoder: Annotated[
        str | None,
        typer.Option("--decoder", help="Frames from the Wan VAE (wan) or the TAEHV tiny decoder (taehv)."),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Start from this picture (the first frames).")
    ] = None,
    continue_video: Annotated[
        Path | None,
        typer.Option("--continue", help="Continue this video: its last frames are the context."),
    ] = None,
    include_input: Annotated[
        bool, typer.Option("--include-input", help="With --continue: the output repeats the given frames.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Render one video from --prompt (or a --timeline of prompts) to -o OUT."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with cli_errors(debug):
        sets = [*(sets or ()), *([f'model.decoder="{decoder}"'] if decoder is not None else [])]
        opts = RenderOptions(preset, tuple(sets), weights, device, fps, crf, lossless, overwrite, debug)
        tl = _timeline(prompt, timeline)
        asked = parse_seconds(seconds)
        length = asked if asked is not None else tl.seconds
        if output is None and tl.output is None:
            raise ConfigError("no output file given", "pass -o video.mp4")
        out = output if output is not None else Path(tl.output or "")
        job = build_job(
            opts,
            tl,
            out,
            length,
            seed if seed is not None else (tl.seed or 0),
            os.environ,
            log_json=log_json,
            start=start_frames(image, continue_video, include_input),
        )
        check_device(device)
        plan = plan_frames(job.seconds, job.config.output.fps, job.config.engine.frames_per_block)
        if not quiet:
            console.print(Text.assemble(("plan: ", "bold"), plan.describe()))
        from dysink_cli.render import render  # torch and the engine load only inside render()

        with RenderProgress(console, quiet=quiet) as progress:
            render(job, progress)
