"""The `dysink` command: render, resume, batch, presets, weights, doctor, inspect, --version.

Commands live in their own modules; this one builds the Typer app and holds the small ones. Start-up
imports no torch and no matplotlib: the commands that need them import them when they run.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from dysink_cli import __version__
from dysink_cli.cli.batch_cmd import batch_command
from dysink_cli.cli.bench_cmd import bench_app
from dysink_cli.cli.errors import OneLineUsage, cli_errors
from dysink_cli.cli.inspect_cmd import inspect_command
from dysink_cli.cli.options import WEIGHTS_ENV, resolve_weights_dir
from dysink_cli.cli.render_cmd import DebugOpt, SetOpt, render_command
from dysink_cli.cli.resume_cmd import resume_command
from dysink_cli.cli.weights_cmd import weights_app
from dysink_cli.config import config_to_dict, list_presets, load_preset_data, resolve_config
from dysink_cli.errors import DysinkError
from dysink_cli.io.ffmpeg import ffmpeg_exe, ffmpeg_version

app = typer.Typer(
    name="dysink",
    cls=OneLineUsage,
    help="Render long videos with autoregressive video diffusion (DySink, LongLive, Self-Forcing).",
    pretty_exceptions_show_locals=False,
    no_args_is_help=True,
    add_completion=False,
)
presets_app = typer.Typer(help="List presets, or show one resolved.", no_args_is_help=False)
app.command("render")(render_command)
app.command("resume")(resume_command)
app.command("batch")(batch_command)
app.add_typer(presets_app, name="presets")
app.add_typer(weights_app, name="weights")
app.add_typer(bench_app, name="bench")
app.command("inspect")(inspect_command)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dysink {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Render long videos with autoregressive video diffusion (DySink, LongLive, Self-Forcing)."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def to_toml(data: dict[str, Any]) -> str:
    """Flat scalars first, then one [table] per section (what `presets show` prints)."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    return "\n".join(lines) + "\n"


@presets_app.callback(invoke_without_command=True)
def presets_list(ctx: typer.Context) -> None:
    """One line per shipped preset: name and description."""
    if ctx.invoked_subcommand is not None:
        return
    with cli_errors():
        names = list_presets()
        width = max(len(n) for n in names)
        for name in names:
            description = load_preset_data(name).get("description", "")
            typer.echo(f"{name:<{width}}  {description}")


@presets_app.command("show")
def presets_show(
    name: Annotated[str, typer.Argument(help="Preset name or .toml path.")],
    sets: SetOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Print a preset resolved over the defaults (and any --set) as TOML."""
    with cli_errors(debug):
        typer.echo(to_toml(config_to_dict(resolve_config(name, tuple(sets or ())))), nl=False)


def _flash_attn() -> str:
    try:
        module = importlib.import_module("flash_attn")
    except ImportError:
        return "not installed: SDPA fallback"
    except Exception as err:  # noqa: BLE001 - a broken CUDA extension raises all sorts
        return f"broken ({type(err).__name__}: {err}): SDPA fallback"
    return f"flash-attn {getattr(module, '__version__', '?')}"


def doctor_rows(weights: Path | None) -> list[tuple[str, str]]:
    """What `doctor` reports, as (item, finding) rows."""
    import torch

    rows = [("dysink", __version__), ("python", sys.version.split()[0]), ("torch", torch.__version__)]
    if torch.cuda.is_available():
        rows.append(("CUDA", f"{torch.version.cuda}, {torch.cuda.device_count()} GPU(s)"))
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            rows.append((f"GPU {i}", f"{props.name}, {props.total_memory / 2**30:.1f} GiB"))
    else:
        rows.append(("CUDA", "not available: renders run on the CPU (fine for --preset tiny and toy)"))
    rows.append(("attention", _flash_attn()))
    try:
        exe = ffmpeg_exe()
        rows += [("ffmpeg", exe), ("ffmpeg version", ffmpeg_version(exe))]
    except DysinkError as err:
        rows.append(("ffmpeg", f"missing: {err.message}"))
    free = shutil.disk_usage(Path.cwd()).free / 2**30
    rows.append(("free disk (here)", f"{free:.1f} GiB"))
    folder, source = resolve_weights_dir(weights, os.environ)
    if folder is None:
        rows.append(("weights", f"none given (--weights DIR or ${WEIGHTS_ENV}); embedded models need none"))
        return rows
    from dysink_cli.io.weights_check import describe_weights_dir

    found = describe_weights_dir(folder)
    rows.append(("weights", f"{folder} (from {source}): {len(found)} recognised file(s)"))
    rows += [(f"  {name}", kind) for name, kind in found]
    return rows


@app.command("doctor")
def doctor_command(
    weights: Annotated[
        Path | None, typer.Option("--weights", help="Also list the files in this folder.")
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Check the machine: torch, GPU, attention backend, ffmpeg, disk, and a weights folder."""
    with cli_errors(debug):
        rows = doctor_rows(weights)
        width = max(len(item) for item, _ in rows)
        for item, finding in rows:
            typer.echo(f"{item:<{width}}  {finding}")


def main() -> None:
    """Console-script entry point (`dysink`, `python -m dysink_cli`, `torchrun -m dysink_cli`)."""
    app(prog_name="dysink")
