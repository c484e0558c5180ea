"""`dysink weights check DIR`: what a weights folder holds and whether render can use it (headers only).

A thin face over io/weights_check.py, which it imports inside the command (torch loads only then).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from dysink_cli.cli.errors import cli_errors
from dysink_cli.cli.render_cmd import DebugOpt
from dysink_cli.config import FilesSection, resolve_config
from dysink_cli.errors import WeightsError

weights_app = typer.Typer(
    help="Inspect weights folders.", no_args_is_help=True, pretty_exceptions_show_locals=False
)


@weights_app.callback()
def _weights() -> None:
    """Inspect weights folders."""


@weights_app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(help="weights folder")],
    preset: Annotated[str | None, typer.Option(help="use this preset's [files] manifest")] = None,
    pe_core: Annotated[str, typer.Option(help="PE-Core size to check against")] = "PE-Core-S16-384",
    no_pe: Annotated[bool, typer.Option("--no-pe", help="PE-Core is optional (no dysink policy)")] = False,
    debug: DebugOpt = False,
) -> None:
    """Read headers only; print each role's file, dtype, parameter count and status. Exit 0 if usable."""
    console = Console(highlight=False, soft_wrap=True)
    with cli_errors(debug):
        manifest = resolve_config(preset).files if preset else FilesSection()
        if directory.exists() and not directory.is_dir():
            raise WeightsError(
                f"{directory} is a file, not a weights folder", "pass the folder that holds it"
            )
        if not directory.is_dir():
            raise WeightsError(f"weights folder {directory} does not exist", "pass the folder with the files")
        from dysink_cli.io import weights, weights_check  # torch loads here, not at start-up

        plan = weights.discover(directory, manifest)
        rows = weights_check.check_plan(plan, weights_check.ModelConfigs.full_size(pe_core), not no_pe)
        table = Table("role", "file", "dtype", Column("params", justify="right"), "status")
        for r in rows:
            color = {"ok": "green", "skipped": "yellow"}.get(r.status, "red")
            cells = (r.role, escape(r.file), r.dtype, f"{r.params:,}" if r.params else "-")
            table.add_row(*cells, f"[{color}]{r.status}[/]")
        console.print(escape(plan.describe()), table)
        for r in rows:
            if r.detail:
                console.print(f"[{'red' if r.problem else 'dim'}]{r.role}:[/] {escape(r.detail)}")
        if problems := [r.role for r in rows if r.problem]:
            raise WeightsError(f"{directory} is not usable: {', '.join(problems)}", "fix those roles")
        console.print("[green]usable[/green]")
