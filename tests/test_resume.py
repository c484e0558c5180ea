"""Resume: kill -9 at a random block, then continue; the final video's frames equal an
uninterrupted render's (lossless output). Ctrl-C checkpoints, closes the file and exits 130."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dysink_cli.io.ffmpeg import probe_video, read_frames
from dysink_cli.render.workdir import checkpoint_due, resumable, work_dir_for

pytestmark = pytest.mark.slow  # end-to-end renders: make test-all, .ci/run

ARGS = [
    "--prompt",
    "a red fox",
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
]


def dysink(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "dysink_cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def wait_for_block(log: Path, block: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    start = time.time()
    while time.time() - start < timeout:
        try:  # the CLI creates the log as a write probe and removes it again before the render
            if sum(1 for _ in log.open()) > block:
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"render ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    pytest.fail("render too slow")


def settled_bytes(path: Path, timeout: float = 30) -> bytes:
    """The file once the orphaned ffmpeg (which finishes the file after a SIGKILL) is done with it."""
    previous, start = b"", time.time()
    while time.time() - start < timeout:
        current = path.read_bytes()
        if current == previous:
            return current
        previous = current
        time.sleep(0.5)
    pytest.fail(f"{path} kept changing")


def frames_of(path: Path) -> list[np.ndarray]:
    return list(read_frames(path))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> list[np.ndarray]:
    out = tmp_path_factory.mktemp("ref") / "ref.mkv"
    proc = dysink("render", *ARGS, "-o", str(out))
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return frames_of(out)


def checkpoint_block(out: Path) -> int:
    return json.loads((work_dir_for(out) / "checkpoint.json").read_text())["block"]


def first_logged_block(log: Path) -> int:
    return json.loads(log.read_text().splitlines()[0])["block"]


def test_kill9_then_resume_is_frame_identical(tmp_path, reference):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, random.Random(os.getpid()).randint(1, 3), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert resumable(out) and probe_video(out)[0] > 0  # the partial file plays
    saved = checkpoint_block(out)
    log2 = tmp_path / "resumed.jsonl"
    again = dysink("resume", str(out), "--device", "cpu", "--quiet", "--log-json", str(log2))
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert saved >= 1 and first_logged_block(log2) == saved  # restarted at the checkpointed block
    got = frames_of(out)
    assert len(got) == len(reference) == 69  # 4 s -> 18 latent frames -> 4*18-3
    assert all(np.array_equal(a, b) for a, b in zip(got, reference, strict=True))
    assert not work_dir_for(out).exists()


def test_rerunning_the_same_command_continues(tmp_path, reference):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = dysink("render", *ARGS, "-o", str(out))
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), reference, strict=True))


def test_ctrl_c_checkpoints_and_exits_130(tmp_path):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    args = [a if a != "4" else "8" for a in ARGS]
    args[args.index("output.checkpoint_every_blocks=1")] = "output.checkpoint_every_blocks=100"
    proc = dysink("render", *args, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    assert resumable(out)  # written by the Ctrl-C even though the interval is 100 blocks
    frames, width, height = probe_video(out)
    assert frames >= 9 and (width, height) == (128, 96)  # the default: the toy world


def test_sigterm_checkpoints_and_exits_143(tmp_path, reference):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    args = [*ARGS[:-4], "--set", "output.checkpoint_every_blocks=100"]
    proc = dysink("render", *args, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    err = proc.stderr.read()
    assert "SIGTERM" in err and f"dysink resume {out}" in err and "Traceback" not in err
    saved = checkpoint_block(out)
    log2 = tmp_path / "resumed.jsonl"
    again = dysink("resume", str(out), "--device", "cpu", "--quiet", "--log-json", str(log2))
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert first_logged_block(log2) == saved
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), reference, strict=True))


def test_a_second_render_of_the_same_output_is_refused_and_a_stale_lock_taken_over(tmp_path, reference):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    first = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, first)
    second = dysink("render", *ARGS, "-o", str(out), "--overwrite")
    assert second.wait(timeout=60) == 2
    err = second.stderr.read()
    assert "being rendered right now" in err and f"pid {first.pid}" in err and "Traceback" not in err
    assert first.poll() is None and resumable(out)  # the running render and its folder untouched
    first.send_signal(signal.SIGKILL)
    first.wait()
    again = dysink("render", *ARGS, "-o", str(out))  # the dead process's lock is taken over
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), reference, strict=True))


@pytest.mark.parametrize("command", ["render", "resume"])
def test_killed_before_the_first_checkpoint_continues_with_either_command(tmp_path, reference, command):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    args = [*ARGS[:-4], "--set", "output.checkpoint_every_blocks=100"]
    proc = dysink("render", *args, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work_dir_for(out) / "checkpoint.json").exists() and resumable(out)
    cmd = (
        ["render", *args, "-o", str(out)] if command == "render" else ["resume", str(out), "--device", "cpu"]
    )
    again = dysink(*cmd)
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), reference, strict=True))
    assert not work_dir_for(out).exists()


def test_paths_with_quotes_spaces_unicode_and_dashes_resume(tmp_path, reference):
    folder = tmp_path / "-it's a vidéo folder"
    folder.mkdir()
    out, log = folder / "-o'1 é.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = dysink("resume", str(out), "--device", "cpu", "--quiet")
    assert again.wait(timeout=300) == 0, again.stderr.read()
    assert all(np.array_equal(a, b) for a, b in zip(frames_of(out), reference, strict=True))


def test_different_job_does_not_resume(tmp_path):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    other = dysink("render", *[a if a != "a red fox" else "a cat" for a in ARGS], "-o", str(out))
    assert other.wait(timeout=120) == 1
    err = other.stderr.read()
    assert "different render" in err and "--overwrite" in err and "Traceback" not in err


def test_corrupt_checkpoint_is_one_line_and_keeps_the_video(tmp_path):
    out, log = tmp_path / "v.mkv", tmp_path / "v.jsonl"
    proc = dysink("render", *ARGS, "-o", str(out), "--log-json", str(log))
    wait_for_block(log, 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = settled_bytes(out)
    meta = work_dir_for(out) / "checkpoint.json"
    tensors = work_dir_for(out) / json.loads(meta.read_text())["tensors"]
    tensors.write_bytes(tensors.read_bytes()[:100])  # truncated tensor file
    again = dysink("resume", str(out), "--device", "cpu")
    assert again.wait(timeout=120) == 1
    err = again.stderr.read()
    assert "corrupt" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2
    assert out.read_bytes() == before and probe_video(out)[0] > 0
    meta.write_text("{not json")
    garbled = dysink("resume", str(out), "--device", "cpu")
    assert garbled.wait(timeout=120) == 1 and "unreadable" in garbled.stderr.read()


def test_checkpoints_are_spaced_to_their_overhead_share():
    assert checkpoint_due(0.0, None, 0.05)  # no checkpoint yet
    assert checkpoint_due(0.0, 8.0, 0.0)  # 0: every checkpoint_every_blocks blocks
    assert not checkpoint_due(159.0, 8.0, 0.05)  # an 8 s checkpoint waits 160 s of rendering
    assert checkpoint_due(160.0, 8.0, 0.05)


def test_checkpoint_overhead_out_of_range_is_refused():
    from dysink_cli.config import resolve_config
    from dysink_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="checkpoint_overhead"):
        resolve_config("tiny", ["output.checkpoint_overhead=1.5"])
