"""A render's work folder (`OUT.dysink/`): loop checkpoints, the memory bank, and resumed video parts.

A checkpoint is a safetensors file of tensors plus `checkpoint.json` (replaced atomically last),
so a crash while writing leaves the previous checkpoint intact. A resumed render writes its new
frames into a part file in the work folder; when it finishes, the parts are joined by stream copy
(no re-encode) into OUT. Nothing already written is deleted before the final video is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from dysink_cli.errors import OutputError, ResumeError
from dysink_cli.workdir import CHECKPOINT_META, work_dir_for

CHECKPOINT_VERSION = 1
META = CHECKPOINT_META


def open_work_dir(output: Path) -> Path:
    work = work_dir_for(output)
    try:
        work.mkdir(exist_ok=True)
        probe = work / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise OutputError(
            f"cannot write the work folder {work}: {err.strerror or err}",
            "make the output's folder writable or pick another output path",
        ) from None
    return work


@dataclass
class Checkpoint:
    """Loop state after block `meta['block'] - 1`: plain metadata and tensors."""

    meta: dict[str, Any]
    tensors: dict[str, Tensor]


def checkpoint_due(since_last_s: float, last_cost_s: float | None, overhead: float) -> bool:
    """A periodic checkpoint may run when it keeps checkpointing within `overhead` of the time:
    at least last_cost / overhead seconds of rendering since the last one ended (0: always)."""
    if overhead <= 0 or last_cost_s is None:
        return True
    return since_last_s >= last_cost_s / overhead


def save_checkpoint(work: Path, meta: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Write tensors to a new file, then point checkpoint.json at it (atomic replace), then tidy."""
    name = f"checkpoint-{meta['block']:07d}.safetensors"
    old = _read_meta(work)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(work / name))
        tmp = work / (META + ".tmp")
        tmp.write_text(json.dumps({**meta, "version": CHECKPOINT_VERSION, "tensors": name}, indent=1))
        os.replace(tmp, work / META)
    except (OSError, SafetensorError) as err:
        (work / name).unlink(missing_ok=True)
        raise OutputError(
            f"cannot write a checkpoint in {work}: {err}",
            "free disk space; the video written so far is kept and plays",
        ) from None
    if old and old.get("tensors") and old["tensors"] != name:
        (work / old["tensors"]).unlink(missing_ok=True)


def _read_meta(work: Path) -> dict[str, Any] | None:
    path = work / META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ResumeError(
            f"checkpoint {path} is unreadable: {err}",
            "delete the work folder (or pass --overwrite) to start again",
        ) from None


def load_checkpoint(work: Path) -> Checkpoint | None:
    """The last checkpoint in `work`, or None if there is none. Corrupt files raise ResumeError."""
    meta = _read_meta(work)
    if meta is None:
        return None
    if meta.get("version") != CHECKPOINT_VERSION or "tensors" not in meta:
        raise ResumeError(f"checkpoint in {work} has an unknown format", "start again with --overwrite")
    try:
        tensors = load_file(str(work / meta["tensors"]))
    except (OSError, SafetensorError) as err:
        raise ResumeError(
            f"checkpoint tensors {work / meta['tensors']} are corrupt: {err}",
            "start again with --overwrite (the video so far is kept)",
        ) from None
    return Checkpoint(meta, tensors)


def part_path(work: Path, output: Path, index: int) -> Path:
    """Where a resumed render writes its frames: part-<index> in the work folder."""
    return work / f"part-{index:03d}{Path(output).suffix}"


def join_parts(parts: list[dict[str, Any]], output: Path, ffmpeg: str) -> None:
    """Stream-copy each part's first `frames` frames and concatenate them into `output`."""
    work = work_dir_for(output)
    trimmed = []
    for i, part in enumerate(parts):
        src = Path(part["path"])
        dst = work / f"trim-{i:03d}{output.suffix}"
        _ffmpeg(
            [
                ffmpeg,
                "-y",
                "-loglevel",
                "error",
                "-i",
                str(src),
                "-map",
                "0:v",
                "-c",
                "copy",
                "-frames:v",
                str(part["frames"]),
                str(dst),
            ]
        )
        trimmed.append(dst)
    listing = work / "parts.txt"
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in trimmed))
    joined = work / f"joined{output.suffix}"
    _ffmpeg(
        [
            ffmpeg,
            "-y",
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            str(joined),
        ]
    )
    os.replace(joined, output)


def _ffmpeg(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
        raise OutputError(
            f"joining the resumed video failed: {tail[0]}",
            "the parts are kept in the work folder; free disk space and run dysink resume again",
        )


def remove_work_dir(work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
