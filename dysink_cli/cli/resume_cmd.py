"""`dysink resume OUT`: continue an interrupted render from its last checkpoint in OUT.dysink/.

Imports cli.options and cli.progress; render() and the work folder's reader only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dysink_cli.cli.errors import cli_errors
from dysink_cli.cli.options import check_device, check_log_json
from dysink_cli.cli.progress import RenderProgress
from dysink_cli.cli.render_cmd import DebugOpt, DeviceOpt, QuietOpt
from dysink_cli.errors import ResumeError
from dysink_cli.render.workdir import work_dir_for


def check_resumable(output: Path) -> None:
    """OUT names a video (not a folder) that is there or has a work folder to continue."""
    work = work_dir_for(output)
    if output.name.endswith(".dysink") and output.is_dir():
        video = output.with_name(output.name.removesuffix(".dysink"))
        raise ResumeError(
            f"{output} is the work folder, not the video", f"pass the video: dysink resume {video}"
        )
    if output.is_dir():
        raise ResumeError(
            f"{output} is a folder, not a video", "pass the output file of the interrupted render"
        )
    if not output.exists() and not work.exists():
        raise ResumeError(
            f"nothing to resume: neither {output} nor its work folder {work.name} exists",
            "check the path, or start the render with dysink render",
        )


def resume_command(
    output: Annotated[Path, typer.Argument(help="The output file of the interrupted render.")],
    device: DeviceOpt = "auto",
    log_json: Annotated[
        Path | None, typer.Option("--log-json", help="Append one JSON line per block.")
    ] = None,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Continue OUT from its last checkpoint; the finished video is identical to an uninterrupted one."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    with cli_errors(debug):
        check_resumable(output)
        check_device(device)
        if log_json is not None:  # the resumed render appends to it
            check_log_json(log_json, output, may_exist=True)
        from dysink_cli.render import render  # torch and the engine load only inside render()
        from dysink_cli.render.workdir import job_from_checkpoint

        job = job_from_checkpoint(output, device=device, log_json=log_json)
        with RenderProgress(console, quiet=quiet) as progress:
            render(job, progress)
