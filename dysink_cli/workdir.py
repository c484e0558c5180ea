"""Where a render keeps its work folder (pure paths; no torch import, so the CLI can check early)."""

from __future__ import annotations

from pathlib import Path

CHECKPOINT_META = "checkpoint.json"


def work_dir_for(output: Path) -> Path:
    """`video.mp4` -> `video.mp4.dysink/` beside it."""
    output = Path(output)
    return output.with_name(output.name + ".dysink")


def resumable(output: Path) -> bool:
    """A checkpoint of an interrupted render of `output` exists (re-running the job continues it)."""
    return (work_dir_for(output) / CHECKPOINT_META).is_file()
