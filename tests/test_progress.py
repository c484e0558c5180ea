"""Progress for logs (no terminal): plain lines every N blocks and every few seconds; --log-json's
checks and the renders that may append to an existing log. render() is patched (tests/test_cli.py)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from dysink_cli.cli.app import app
from dysink_cli.cli.progress import RenderProgress
from dysink_cli.config import resolve_config
from dysink_cli.render.events import BlockDone, RenderStarted
from dysink_cli.render.job import RenderJob
from dysink_cli.render.workdir import CHECKPOINT_META, JOB_FILE, job_fingerprint, work_dir_for
from dysink_cli.timeline import Segment
from tests.test_cli import FakeRender

runner = CliRunner()
LINE = re.compile(r"block (\d+)/(\d+) \| ([\d.]+)/([\d.]+) s of video \| ([\d.]+) fps \| ETA \d+:\d\d:\d\d")


@pytest.fixture
def fake_render(monkeypatch: pytest.MonkeyPatch) -> FakeRender:
    fake = FakeRender()
    monkeypatch.setattr("dysink_cli.render.render", fake)
    monkeypatch.delenv("DYSINK_WEIGHTS", raising=False)
    return fake


def test_without_a_terminal_progress_is_plain_lines(
    fake_render: FakeRender, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dysink_cli.cli.progress.PLAIN_EVERY_BLOCKS", 2)
    monkeypatch.setattr("dysink_cli.cli.progress.PLAIN_EVERY_S", 0.0)
    result = runner.invoke(app, ["render", "-p", "fox", "-s", "5", "-o", str(tmp_path / "a.mp4")])
    assert result.exit_code == 0, result.output
    lines = [LINE.search(line) for line in result.stderr.splitlines()]
    found = [m.groups() for m in lines if m]
    assert [(done, total) for done, total, *_ in found] == [("1", "7"), ("3", "7"), ("5", "7"), ("7", "7")]
    assert [float(video) for _, _, video, *_ in found] == pytest.approx(
        [9 / 16, 33 / 16, 57 / 16, 81 / 16], abs=0.05
    )
    assert all(duration == "5.1" for *_, duration, _ in found)
    assert "━" not in result.stderr  # no bars in a log


def _events(progress: RenderProgress, clock: list[float], per_block_s: float, blocks: int = 100) -> None:
    progress(RenderStarted("v.mp4", blocks, 3 * blocks, 12 * blocks - 3, 16, (12 * blocks - 3) / 16))
    for b in range(blocks):
        clock[0] += per_block_s
        frames = 12 * (b + 1) - 3
        progress(BlockDone(b, blocks, frames, frames / 16))


@pytest.mark.parametrize(
    ("per_block_s", "expected"),
    [
        (1.0, [1, 11, 21, 31, 41, 51, 61, 71, 81, 91]),  # 10 blocks take 10 s: every 10 blocks
        (0.125, [1, 41, 81]),  # 10 blocks take 1.25 s: every 5 s (40 blocks)
        (3.0, [1, 11, 21, 31, 41, 51, 61, 71, 81, 91]),  # 10 blocks take 30 s: still every 10 blocks
    ],
)
def test_a_line_when_both_n_blocks_and_5_seconds_passed(per_block_s: float, expected: list[int]) -> None:
    out = io.StringIO()
    clock = [0.0]
    with RenderProgress(Console(file=out, width=200), clock=lambda: clock[0]) as progress:
        _events(progress, clock, per_block_s)
    done = [int(m[1]) for m in LINE.finditer(out.getvalue())]
    assert done == expected
    first = LINE.search(out.getvalue())
    assert first is not None and float(first[5]) == pytest.approx(9 / per_block_s, rel=1e-3)  # fps


def test_eta_counts_the_blocks_left() -> None:
    out = io.StringIO()
    clock = [0.0]
    with RenderProgress(Console(file=out, width=200), clock=lambda: clock[0]) as progress:
        _events(progress, clock, 2.0, blocks=10)
    assert "block 1/10" in out.getvalue() and "ETA 0:00:18" in out.getvalue()  # 9 blocks x 2 s


def test_quiet_prints_no_progress_lines() -> None:
    out = io.StringIO()
    clock = [0.0]
    with RenderProgress(Console(file=out), quiet=True, clock=lambda: clock[0]) as progress:
        _events(progress, clock, 1.0)
    assert out.getvalue() == ""


# --- --log-json ------------------------------------------------------------------------------------


def _render(out: Path, log: Path, *more: str):  # noqa: ANN202
    return runner.invoke(
        app, ["render", "-p", "fox", "-s", "1", "-o", str(out), "--log-json", str(log), *more]
    )


def test_an_existing_log_needs_overwrite(fake_render: FakeRender, tmp_path: Path) -> None:
    out, log = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    log.write_text("old\n")
    refused = _render(out, log)
    assert refused.exit_code == 2 and "already exists" in refused.stderr and not fake_render.jobs
    assert log.read_text() == "old\n"
    assert _render(out, log, "--overwrite").exit_code == 0
    assert fake_render.jobs[0].log_json == log


def _interrupted(out: Path, checkpoint: bool) -> RenderJob:
    """A work folder as a killed render leaves it: the job file, and maybe a checkpoint record."""
    job = RenderJob((Segment(0.0, "fox"),), 1.0, out, resolve_config("tiny"))
    work = work_dir_for(out)
    work.mkdir()
    (work / JOB_FILE).write_text(json.dumps(job_fingerprint(job)))
    if checkpoint:
        (work / CHECKPOINT_META).write_text(json.dumps({"job": job_fingerprint(job), "block": 1}))
    out.write_bytes(b"half")
    return job


@pytest.mark.parametrize("checkpoint", [True, False])
def test_a_render_that_continues_may_append_to_its_log(
    fake_render: FakeRender, tmp_path: Path, checkpoint: bool
) -> None:
    out, log = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    _interrupted(out, checkpoint)
    log.write_text('{"block": 0}\n')
    result = _render(out, log)
    assert result.exit_code == 0, result.output
    assert fake_render.jobs[0].log_json == log and not fake_render.jobs[0].overwrite


def test_resume_appends_to_an_existing_log_but_never_the_video(
    fake_render: FakeRender, tmp_path: Path
) -> None:
    out, log = tmp_path / "a.mp4", tmp_path / "a.jsonl"
    _interrupted(out, checkpoint=True)
    log.write_text('{"block": 0}\n')
    result = runner.invoke(app, ["resume", str(out), "--log-json", str(log)])
    assert result.exit_code == 0, result.output
    assert fake_render.jobs[0].log_json == log
    same = runner.invoke(app, ["resume", str(out), "--log-json", str(tmp_path / "." / "a.mp4")])
    assert same.exit_code == 2 and "is the output video" in same.stderr and len(fake_render.jobs) == 1
