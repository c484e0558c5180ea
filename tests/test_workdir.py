"""The work folder: --overwrite starts afresh inside a locked folder, a refused render leaves
nothing behind, and a killed-before-checkpoint job file lets the same job restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dysink_cli.config import resolve_config
from dysink_cli.errors import OutputError
from dysink_cli.io.ffmpeg import read_frames
from dysink_cli.render import RenderJob, render
from dysink_cli.render.workdir import WorkDir, work_dir_for
from dysink_cli.timeline import Segment


def job(out: Path, overwrite: bool = False, prompt: str = "a fox") -> RenderJob:
    cfg = resolve_config("tiny", ["output.checkpoint_every_blocks=1", "output.checkpoint_overhead=0"])
    return RenderJob((Segment(0.0, prompt),), 1.0, out, cfg, seed=1, device="cpu", overwrite=overwrite)


def test_overwrite_replaces_a_finished_video_and_a_stale_work_folder(tmp_path: Path) -> None:
    out = tmp_path / "v.mkv"
    render(job(out), lambda e: None)
    first = [f.copy() for f in read_frames(out)]
    stale = work_dir_for(out)
    stale.mkdir()
    (stale / "checkpoint.json").write_text("{garbage")  # an old, broken checkpoint
    render(job(out, overwrite=True), lambda e: None)
    again = list(read_frames(out))
    assert len(again) == len(first) and all(np.array_equal(a, b) for a, b in zip(again, first, strict=True))
    assert not stale.exists()


def test_an_existing_output_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    out = tmp_path / "v.mkv"
    out.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists"):
        render(job(out), lambda e: None)
    assert out.read_bytes() == b"precious" and not work_dir_for(out).exists()


def test_a_held_lock_refuses_a_second_render(tmp_path: Path) -> None:
    out = tmp_path / "v.mkv"
    holder = WorkDir(out)
    holder.acquire(job(out))
    try:
        # flock locks belong to the open file: a second open in this process is refused too
        with pytest.raises(OutputError, match="being rendered right now") as err:
            render(job(out, overwrite=True), lambda e: None)
        assert "wait for that render" in err.value.hint
        assert not out.exists() and work_dir_for(out).is_dir()  # the holder's folder stays
    finally:
        holder.release(remove=True)
    render(job(out), lambda e: None)  # released: the next render goes ahead
    assert out.stat().st_size > 0 and not work_dir_for(out).exists()


def test_a_job_file_without_checkpoint_lets_the_same_job_restart(tmp_path: Path) -> None:
    out = tmp_path / "v.mkv"
    started = WorkDir(out)
    started.acquire(job(out))
    started.release()  # as if killed before its first checkpoint
    out.write_bytes(b"partial")
    with pytest.raises(OutputError, match="already exists"):
        render(job(out, prompt="another prompt"), lambda e: None)  # another job may not take it
    render(job(out), lambda e: None)
    assert out.read_bytes() != b"partial" and not work_dir_for(out).exists()
