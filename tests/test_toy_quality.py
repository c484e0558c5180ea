"""The toy model as a user meets it: its 5 s demo on 2 CPU threads, and the measures of
toy/evaluate.py (issue 13, item 6) checked on exact ground truth, where their answer is known.

The shipped weights' own scores are in bench/RESULTS.md ("Toy world: distribution matching"). The
targets they meet are asserted here on shorter renders (prompt adherence for four of the six
required themes); the ones they miss (lava, night city, the camera, sharp shapes) are reported there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from dysink_cli.toy import evaluate
from dysink_cli.toy.adherence import ThemeClassifier, camera_velocity, edge_sharpness
from dysink_cli.toy.evaluate import REQUIRED, blocks_for, ground_truth, main, theme_row
from dysink_cli.toy.models import load_toy_networks
from dysink_cli.toy.world import CAMERA_SPEED_PX_PER_FRAME, velocity


def test_blocks_cover_the_seconds() -> None:
    for seconds in (0.5, 5.0, 20.0, 120.0):
        frames = 12 * blocks_for(seconds) - 3
        assert seconds * 16 <= frames < seconds * 16 + 12


def test_measures_on_ground_truth_give_the_known_answer() -> None:
    """Each required theme's truth is recognised, moves at 2 px/frame the commanded way, and is
    sharper than the same frames blurred (a blob-maker's output)."""
    classifier = ThemeClassifier.fit()
    for i, (theme, motion) in enumerate(REQUIRED.items()):
        truth = ground_truth(theme, motion, 48, 500 + i)
        assert classifier.share(truth, theme) >= 0.95, theme
        vx, vy = camera_velocity(truth)
        want = velocity(motion)
        assert abs(vx - want[0]) + abs(vy - want[1]) <= 0.2 * CAMERA_SPEED_PX_PER_FRAME, (theme, vx, vy)
        blurred = F.avg_pool2d(truth, 5, stride=1, padding=2, count_include_pad=False)
        assert edge_sharpness(blurred) < 0.6 * edge_sharpness(truth), theme


def test_edge_sharpness_of_flat_frames_is_zero() -> None:
    flat = torch.full((3, 3, 24, 32), 0.5)
    assert edge_sharpness(flat) == 0.0
    noisy = torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    assert edge_sharpness(noisy) > 0.3


@pytest.mark.slow
def test_the_toy_demo_renders_in_a_minute(tmp_path: Path) -> None:
    """5 s of the toy world through the CLI, loading included, on 2 threads (issue 13, item 7)."""
    env = {k: v for k, v in os.environ.items() if k != "DYSINK_WEIGHTS"} | {"OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dysink_cli", "render", "--preset", "toy", "--prompt",
         "a snowy field, the camera pans right", "--seconds", "5", "-o", str(tmp_path / "demo.mp4")],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "demo.mp4").stat().st_size > 1000
    assert seconds <= 60, seconds


@pytest.mark.slow
def test_the_shipped_toy_draws_the_prompted_theme() -> None:
    """5 s per theme (81 frames) through the DySink loop: the ground-truth classifier recognises the
    prompt's theme in at least 95 % of frames for the four required themes the weights meet."""
    torch.set_num_threads(2)
    nets, classifier = load_toy_networks("cpu", torch.float32), ThemeClassifier.fit()
    for seed, theme in enumerate(("snow", "ocean", "desert", "meadow")):
        row = theme_row(nets, classifier, theme, REQUIRED[theme], 5.0, seed)
        assert row["recognised"] >= 0.95, row


@pytest.mark.slow
def test_the_evaluation_with_fp8_linears(tmp_path: Path) -> None:
    """`--fp8` renders through the e4m3 linears (their float32 arithmetic on the CPU): the report counts
    the converted linears, and the themes FP8 keeps at 20 s (bench/RESULTS.md: snow 99 %, desert
    100 %) are still drawn."""
    report_path = tmp_path / "fp8.json"
    assert main(["--fp8", "--seconds", "3", "--stability-seconds", "0", "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    toy_blocks = load_toy_networks("cpu", torch.float32)[0].blocks
    assert report["fp8_linears"] == 10 * len(toy_blocks)  # q, k, v, o twice and the FFN's two
    rows = {row["theme"]: row for row in report["themes"]}
    assert set(rows) == set(REQUIRED)
    for theme in ("snow", "desert"):
        assert rows[theme]["recognised"] >= 0.95, rows[theme]


def test_the_evaluation_draws_on_the_networks_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--device cuda` rendered nothing (session 11: host noise fed to a CUDA DiT); the block loop
    must be given the device the networks were loaded on."""
    seen: list[object] = []
    real = evaluate.BlockGenerator

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate, "BlockGenerator", spy)
    torch.set_num_threads(2)
    nets = load_toy_networks("cpu", torch.float32)
    frames, _ = evaluate.render_prompt(nets, "a snowy field", 1, seed=0)
    assert seen == [next(nets[0].parameters()).device] and frames.shape[0] == 9
