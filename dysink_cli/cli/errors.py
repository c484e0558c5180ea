"""The CLI error boundary: one table from error class to exit code, one red line plus the hint.

Every command runs inside `cli_errors`, the one place that turns an error into an exit code: 2 for
usage, config, weights and output mistakes, 1 for runtime failures, 128 + the signal for a stop
(130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Tracebacks only with --debug. `OneLineUsage`, the app's
group, prints click's own usage mistakes (unknown flag, a value it cannot parse) the same way.
Imports errors only.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from dysink_cli.errors import (
    ConfigError,
    DysinkError,
    FfmpegError,
    GpuError,
    Interrupted,
    OutputError,
    ResumeError,
    TimelineError,
    WeightsError,
)

SIGNAL_BASE = 128
EXIT_INTERRUPTED = SIGNAL_BASE + 2  # SIGINT: Ctrl-C

# error class -> (exit code, label); the most specific class wins (looked up along the MRO).
# Interrupted's code is the one for Ctrl-C; `lookup` gives 128 + the signal that stopped the render.
ERROR_TABLE: dict[type[DysinkError], tuple[int, str]] = {
    TimelineError: (2, "timeline error"),
    ConfigError: (2, "config error"),
    WeightsError: (2, "weights error"),
    GpuError: (2, "GPU error"),
    OutputError: (2, "output error"),
    FfmpegError: (1, "ffmpeg error"),
    ResumeError: (1, "resume error"),
    Interrupted: (EXIT_INTERRUPTED, "interrupted"),
    DysinkError: (1, "error"),
}


def lookup(err: DysinkError) -> tuple[int, str]:
    """(exit code, label) of an error, by its most specific class in ERROR_TABLE; a stop signal
    exits 128 + its number (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), as shells expect."""
    cls = next(c for c in type(err).__mro__ if c in ERROR_TABLE)
    code, label = ERROR_TABLE[cls]
    if isinstance(err, Interrupted):
        code = SIGNAL_BASE + err.signum
    return code, label


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


# typer ships its own copy of click (typer._click) in recent releases: take its classes from typer's
# public BadParameter, so this works with either.
UsageError: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
NoArgsIsHelpError = getattr(sys.modules[UsageError.__module__], "NoArgsIsHelpError", ())


@contextmanager
def _usage_errors() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise  # a bare `dysink` prints the help
    except UsageError as err:
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "dysink"
        message = " ".join(err.format_message().split())  # type: ignore[attr-defined]
        print_error("usage error", message, f"see `{where} --help`")
        raise typer.Exit(getattr(err, "exit_code", 2)) from None


class OneLineUsage(TyperGroup):
    """The app's group: click's usage errors (its own parsing, before any command runs) become one
    red line and a hint, exit 2, instead of the usage text and a boxed panel."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        with _usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        with _usage_errors():
            return super().invoke(ctx)
