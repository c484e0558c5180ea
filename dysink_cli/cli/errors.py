"""The CLI error boundary: one table from error class to exit code, one red line plus the hint.

Exit codes: 2 for usage and config mistakes, 1 for runtime failures, 130 for Ctrl-C. Tracebacks only
with --debug.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from dysink_cli.errors import (
    CheckpointError,
    ConfigError,
    DysinkError,
    FfmpegError,
    GpuError,
    Interrupted,
    OutputError,
    ResumeError,
    TimelineError,
)

EXIT_INTERRUPTED = 130

# error class -> (exit code, label); the most specific class wins (looked up along the MRO).
ERROR_TABLE: dict[type[DysinkError], tuple[int, str]] = {
    TimelineError: (2, "timeline error"),
    ConfigError: (2, "config error"),
    CheckpointError: (2, "checkpoint error"),
    GpuError: (2, "GPU error"),
    OutputError: (2, "output error"),
    FfmpegError: (1, "ffmpeg error"),
    ResumeError: (1, "resume error"),
    DysinkError: (1, "error"),
}


def lookup(err: DysinkError) -> tuple[int, str]:
    """(exit code, label) of an error, by its most specific class in ERROR_TABLE; a stop signal
    exits 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as shells expect."""
    if isinstance(err, Interrupted):
        return 128 + err.signum, "interrupted"
    for cls in type(err).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]  # type: ignore[index]
    return ERROR_TABLE[DysinkError]


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def print_error(label: str, message: str, hint: str = "") -> None:
    """One red line naming the problem, then the fix (no markup is read from the message)."""
    console = err_console()
    console.print(Text.assemble((f"{label}: ", "bold red"), (message, "red")))
    if hint:
        console.print(Text.assemble(("  fix: ", "yellow"), hint))


def report(err: BaseException, debug: bool = False) -> int:
    """Print an error the house way and return its exit code."""
    if debug:
        err_console().print_exception(show_locals=False)
    if isinstance(err, DysinkError):
        code, label = lookup(err)
        print_error(label, err.message, err.hint)
        return code
    print_error(
        "internal error", f"{type(err).__name__}: {err}", "rerun with --debug and report the traceback"
    )
    return 1


@contextmanager
def cli_errors(debug: bool = False) -> Iterator[None]:
    """Turn domain errors, crashes and Ctrl-C into one line and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        print_error("interrupted", "stopped by Ctrl-C; the video written so far stays playable")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as err:  # noqa: BLE001 - the boundary: nothing escapes as a traceback
        raise typer.Exit(report(err, debug)) from None
