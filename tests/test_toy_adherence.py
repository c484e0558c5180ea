"""The toy world's adherence measures, checked on exact ground-truth video (they must be right
before they judge a model): theme recognition, camera motion, contrast over time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dysink_cli.toy.adherence import (
    ThemeClassifier,
    camera_velocity,
    contrast_trend,
    phase_shift,
    speed_along,
)
from dysink_cli.toy.world import CAMERA_SPEED_PX_PER_FRAME, THEMES, World, camera_path, velocity


@pytest.fixture(scope="module")
def classifier() -> ThemeClassifier:
    return ThemeClassifier.fit(views_per_map=8)


@pytest.mark.parametrize("theme", THEMES)
def test_every_theme_is_recognised_on_unseen_maps(classifier: ThemeClassifier, theme: str) -> None:
    xy = torch.rand(24, 2, generator=torch.Generator().manual_seed(5)) * 5000
    frames = World(theme, seed=7).render(xy)  # a map the classifier never saw
    assert classifier.share(frames, theme) >= 0.95


def test_phase_shift_recovers_a_known_shift() -> None:
    world = World("meadow", seed=3)
    a, b = world.render(torch.tensor([[100.0, 50.0], [106.5, 47.0]]))
    dx, dy = phase_shift(a, b)  # the camera moved +6.5, -3: the content moves -6.5, +3
    assert abs(dx + 6.5) < 0.5 and abs(dy - 3.0) < 0.5


@pytest.mark.parametrize("motion", ["left", "right", "up", "down", "still"])
def test_camera_velocity_matches_the_commanded_motion(motion: str) -> None:
    path = camera_path((300.0, 200.0), [(motion, 24)])
    frames = World("desert", seed=4).render(path)
    vx, vy = camera_velocity(frames)
    want = velocity(motion)
    assert (
        abs(vx - want[0]) <= 0.2 * CAMERA_SPEED_PX_PER_FRAME
        and abs(vy - want[1]) <= 0.2 * CAMERA_SPEED_PX_PER_FRAME
    )


@pytest.mark.parametrize("theme", ["snow", "night city"])
def test_camera_velocity_sees_through_soft_frames_and_a_static_pattern(theme: str) -> None:
    """A decoder's output: soft, with a faint fixed texture that does not move with the camera.
    Plain phase correlation reads 0 px/frame here (the pattern and the borders vote for no motion)."""
    frames = World(theme, seed=4).render(camera_path((300.0, 200.0), [("down", 24)]))
    soft = F.avg_pool2d(frames, 5, stride=1, padding=2, count_include_pad=False)
    pattern = 0.05 * torch.randn(1, 3, *frames.shape[-2:], generator=torch.Generator().manual_seed(0))
    vx, vy = camera_velocity(soft + pattern)
    assert abs(vx) <= 0.2 and abs(vy - CAMERA_SPEED_PX_PER_FRAME) <= 0.2 * CAMERA_SPEED_PX_PER_FRAME


def test_contrast_trend_sees_a_drift_to_grey() -> None:
    frames = World("ocean", seed=2).render(camera_path((0.0, 0.0), [("right", 40)]))
    first, last = contrast_trend(frames, 10)
    assert abs(first - last) / first < 0.3  # the world itself holds its contrast
    fading = (
        frames * torch.linspace(1, 0.1, 40)[:, None, None, None]
        + 0.5 * torch.linspace(0, 0.9, 40)[:, None, None, None]
    )
    first, last = contrast_trend(fading, 10)
    assert last < 0.5 * first


def test_speed_along_the_command() -> None:
    assert speed_along((2.0, 0.5), "right") == 2.0 and speed_along((2.0, 0.5), "left") == -2.0
    assert speed_along((0.0, -1.5), "up") == 1.5  # y grows downward: up is -y
    assert speed_along((3.0, 3.0), "still") == 0.0
