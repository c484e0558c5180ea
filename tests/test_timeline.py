"""plan_frames arithmetic and Timeline parsing / switch placement (pure, no torch)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dysink_cli.errors import ConfigError, TimelineError
from dysink_cli.timeline import Segment, Switch, Timeline, plan_frames


def test_plan_for_30_seconds_matches_hand_arithmetic() -> None:
    plan = plan_frames(30, 16, 3)
    # 480 frames wanted; 4T - 3 >= 480 -> T >= 120.75 -> 123 (a multiple of 3) -> 489 frames
    assert (plan.latent_frames, plan.blocks, plan.video_frames) == (123, 41, 489)
    assert plan.duration_s == pytest.approx(30.5625)
    assert plan.wanted_frames == 480
    assert plan.describe() == "489 frames = 41 blocks x 3 latents (123) at 16 fps = 30.56 s, asked for 30 s"


@pytest.mark.parametrize(
    ("seconds", "fps", "fpb", "latents", "frames"),
    [
        (5, 16, 3, 21, 81),  # 80 wanted
        (0.01, 16, 3, 3, 9),  # at least one frame -> one block
        (59.8125, 16, 3, 240, 957),  # the reference's 240 latents -> 957 frames exactly
        (0.7, 30, 1, 6, 21),  # 0.7 * 30 = 21.000000000000004 must not round up to 22
        (2, 16, 1, 9, 33),
    ],
)
def test_plan_examples(seconds: float, fps: int, fpb: int, latents: int, frames: int) -> None:
    plan = plan_frames(seconds, fps, fpb)
    assert (plan.latent_frames, plan.video_frames) == (latents, frames)


def test_plan_is_the_smallest_whole_block_cover() -> None:
    for tenth in range(1, 400):
        seconds = tenth / 10
        plan = plan_frames(seconds, 16, 3)
        wanted = math.ceil(round(seconds * 16, 6))
        assert plan.latent_frames % 3 == 0 and plan.video_frames == 4 * plan.latent_frames - 3
        assert plan.video_frames >= wanted
        assert 4 * (plan.latent_frames - 3) - 3 < wanted  # one block fewer would be too short


def test_block_start_frames_and_times() -> None:
    plan = plan_frames(10, 16, 3)
    assert [plan.block_start_frame(b) for b in range(4)] == [0, 9, 21, 33]
    assert plan.block_start_s(1) == pytest.approx(9 / 16)


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf")])
def test_plan_rejects_bad_lengths(seconds: float) -> None:
    with pytest.raises(ConfigError, match="positive"):
        plan_frames(seconds, 16, 3)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


GOOD = """
seconds = 12
seed = 7
preset = "tiny"
output = "fox.mp4"

[settings.dysink]
top_k = 3

[[segment]]
at = 0
prompt = "a fox in snow"

[[segment]]
at = 4.0
prompt = "the fox jumps"
"""


def test_load_a_good_timeline(tmp_path: Path) -> None:
    tl = Timeline.load(write(tmp_path, GOOD))
    assert tl.segments == (Segment(0.0, "a fox in snow"), Segment(4.0, "the fox jumps"))
    assert (tl.seconds, tl.seed, tl.preset, tl.output) == (12.0, 7, "tiny", "fox.mp4")
    assert tl.settings == {"dysink": {"top_k": 3}}


def test_switch_is_the_first_block_boundary_at_or_after_at(tmp_path: Path) -> None:
    tl = Timeline.load(write(tmp_path, GOOD))
    plan = plan_frames(12, 16, 3)
    # block b starts at frame 12b - 3: 4.0 s = frame 64 -> block 6 (frame 69, 4.3125 s)
    assert tl.switch_blocks(plan) == [Switch(0, 0, 0.0, 0.0), Switch(1, 6, 4.0, 69 / 16)]


def test_switch_exactly_on_a_boundary_is_not_moved() -> None:
    tl = Timeline((Segment(0, "a"), Segment(21 / 16, "b")))
    assert tl.switch_blocks(plan_frames(5, 16, 3))[1] == Switch(1, 2, 21 / 16, 21 / 16)


def test_from_prompt() -> None:
    tl = Timeline.from_prompt("  a red fox ", 5)
    assert tl.segments == (Segment(0.0, "a red fox"),) and tl.seconds == 5
    with pytest.raises(TimelineError, match="empty"):
        Timeline.from_prompt("  ")


SEG = '[[segment]]\nat = 0\nprompt = "a"\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[segment]]\nat = 1\nprompt = "a"\n', r"segment 1 \(at = 1 s\): the first segment must start at 0"),
        (SEG + '[[segment]]\nat = 0\nprompt = "b"\n', r"segment 2 \(at = 0 s\) starts at the same time"),
        (
            SEG + '[[segment]]\nat = 5\nprompt = "b"\n[[segment]]\nat = 3\nprompt = "c"\n',
            r"segment 3 \(at = 3 s\) starts before segment 2",
        ),
        (SEG + '[[segment]]\nat = -2\nprompt = "b"\n', r"segment 2 \(at = -2 s\) starts before 0"),
        (SEG + '[[segment]]\nat = 2\nprompt = ""\n', r"segment 2 \(at = 2 s\) has an empty prompt"),
        (
            SEG + '[[segment]]\nat = 2\npromt = "b"\n',
            r"segment 2 \(at = 2 s\) has unknown key 'promt'.*'prompt'",
        ),
        (SEG + '[[segment]]\nprompt = "b"\n', r"segment 2 has no 'at'"),
        (SEG + '[[segment]]\nat = "soon"\nprompt = "b"\n', r"at = 'soon' is not a number"),
        ("secnds = 3\n" + SEG, r"unknown key 'secnds'.*'seconds'"),
        ("seconds = -3\n" + SEG, r"seconds = -3 must be positive"),
        ("seed = 1.5\n" + SEG, r"seed = 1.5 is not an integer"),
        ("settings = 3\n" + SEG, r"settings must be a table"),
        ("seconds = 3\n", r"no \[\[segment\]\] entries"),
        ("[[segment]\nat = 0", r"not valid TOML"),
    ],
)
def test_bad_timelines_name_the_problem(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(TimelineError, match=message):
        Timeline.load(write(tmp_path, body))


def test_missing_timeline_file(tmp_path: Path) -> None:
    with pytest.raises(TimelineError, match="does not exist"):
        Timeline.load(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("at", "message"),
    [
        (5.5, r"segment 2 \(at = 5.5 s\) starts at or past the end of the 5.06 s video"),
        (5.0, r"segment 2 \(at = 5 s\) starts after the last block boundary \(4.31 s\)"),
    ],
)
def test_switches_past_the_video(at: float, message: str) -> None:
    tl = Timeline((Segment(0, "a"), Segment(at, "b")))
    with pytest.raises(TimelineError, match=message):
        tl.switch_blocks(plan_frames(5, 16, 3))


def test_two_switches_in_one_block_are_refused() -> None:
    tl = Timeline((Segment(0, "a"), Segment(1.0, "b"), Segment(1.1, "c")))
    with pytest.raises(
        TimelineError, match=r"segment 3 \(at = 1.1 s\) takes effect at the same block \(2, 1.31 s\)"
    ):
        tl.switch_blocks(plan_frames(5, 16, 3))
