"""The lol and rolling-sink presets render end to end (with the embedded tiny model), and LoL's
per-head jitter survives a resume."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dysink_cli.cli.app import app
from dysink_cli.io.ffmpeg import probe_video, read_frames
from tests.test_resume import dysink, frames_of, wait_for_block

pytestmark = pytest.mark.slow  # end-to-end renders: make test-all, .ci/run

TINY = ["--set", 'model.name="tiny"', "--set", "output.width=64", "--set", "output.height=48"]


@pytest.mark.parametrize(
    ("preset", "extra"),
    [
        ("lol", []),
        ("rolling-sink", ["--set", "engine.horizon_frames=12", "--set", "engine.window_frames=12"]),
    ],
)
def test_preset_renders(tmp_path: Path, preset: str, extra: list[str]) -> None:
    out = tmp_path / f"{preset}.mp4"
    log = tmp_path / "log.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "render",
            "--preset",
            preset,
            *TINY,
            *extra,
            "--prompt",
            "a fox",
            "--seconds",
            "5",
            "-o",
            str(out),
            "--device",
            "cpu",
            "--quiet",
            "--log-json",
            str(log),
        ],
    )
    assert result.exit_code == 0, result.output
    assert probe_video(out) == (81, 64, 48)
    assert len(log.read_text().splitlines()) == 7


def test_lol_jitter_changes_the_video_and_survives_a_resume(tmp_path: Path) -> None:
    args = [
        "--prompt",
        "a fox",
        "--seconds",
        "4",
        "--lossless",
        "--quiet",
        "--device",
        "cpu",
        "--set",
        "output.checkpoint_every_blocks=1",
        "--set",
        "output.checkpoint_overhead=0",
        "--set",
        "rope.jitter=0.8",
    ]
    ref = tmp_path / "ref.mkv"
    assert dysink("render", *args, "-o", str(ref)).wait(timeout=300) == 0
    plain = tmp_path / "plain.mkv"
    assert dysink("render", *args[:-2], "-o", str(plain)).wait(timeout=300) == 0
    assert not all(np.array_equal(a, b) for a, b in zip(read_frames(ref), read_frames(plain), strict=True))
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *args, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert dysink("resume", str(out), "--device", "cpu", "--quiet").wait(timeout=300) == 0
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), frames_of(ref), strict=True))
