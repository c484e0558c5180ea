"""Domain errors. Each carries a one-line message and a hint that tells the user the fix.

Library code only raises; the CLI maps each class to an exit code (cli/errors.py's ERROR_TABLE is
the one owner of exit codes). Imports nothing.
"""

from __future__ import annotations


class DysinkError(Exception):
    """Base class: `message` says what is wrong, `hint` how to fix it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(DysinkError):
    """Bad preset, override, flag value or size."""


class TimelineError(ConfigError):
    """Bad timeline file or segment."""


class WeightsError(DysinkError):
    """Missing, unreadable or mismatched model weights (files, not render checkpoints)."""


class GpuError(DysinkError):
    """CUDA asked for but not usable."""


class FfmpegError(DysinkError):
    """The encoder failed or could not be started."""


class OutputError(DysinkError):
    """The output path cannot be written (exists, unwritable, disk full)."""


class ResumeError(DysinkError):
    """A render's work folder cannot be resumed (missing or corrupt checkpoint)."""


class Interrupted(DysinkError):
    """A stop signal ended the render after a finished block (it checkpointed first)."""

    def __init__(self, message: str, hint: str = "", signum: int = 2) -> None:
        super().__init__(message, hint)
        self.signum = signum
