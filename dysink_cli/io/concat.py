"""Joining a resumed render's video parts by stream copy (no re-encode).

Every path handed to ffmpeg is absolute, so a name that starts with a dash is never read as an
option, and the concat list quotes each path by ffmpeg's rules, so quotes, spaces and non-ASCII
characters survive.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from dysink_cli.errors import OutputError


def concat_list_line(path: Path) -> str:
    """One `file '...'` line of ffmpeg's concat demuxer: a quote becomes '\\'' (close, escaped, reopen)."""
    return "file '" + str(path).replace("'", "'\\''") + "'\n"


def join_parts(parts: Sequence[tuple[Path, int]], output: Path, scratch: Path, ffmpeg: str) -> None:
    """Stream-copy the first `frames` frames of each (path, frames) part and concatenate them into
    `output` (replaced atomically at the end). Intermediate files go to the folder `scratch`."""
    suffix = Path(output).suffix
    trimmed = []
    for i, (src, frames) in enumerate(parts):
        dst = (scratch / f"trim-{i:03d}{suffix}").resolve()
        _run([ffmpeg, "-y", "-loglevel", "error", "-i", str(Path(src).resolve()), "-map", "0:v",
              "-c", "copy", "-frames:v", str(frames), str(dst)])  # fmt: skip
        trimmed.append(dst)
    listing = (scratch / "parts.txt").resolve()
    listing.write_text("".join(concat_list_line(p) for p in trimmed), encoding="utf-8")
    joined = (scratch / f"joined{suffix}").resolve()
    _run([ffmpeg, "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
          "-c", "copy", str(joined)])  # fmt: skip
    os.replace(joined, output)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise OutputError(
            f"joining the resumed video failed: {tail[0]}",
            "the parts are kept in the work folder; run dysink resume again",
        )
