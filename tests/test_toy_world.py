"""Toy world: deterministic exact views, theme colours, camera scripts, and prompt round trips."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dysink_cli.toy import captions
from dysink_cli.toy.captions import parse_prompt, random_caption
from dysink_cli.toy.world import (
    CAMERA_SPEED_PX_PER_FRAME,
    DEFAULT_DRIFT,
    MOTIONS,
    THEMES,
    World,
    camera_path,
    velocity,
)

REQUIRED = ("snow", "ocean", "desert", "meadow", "lava", "night city")


def _views(n: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 2) float64 top-left corners spread over +-2000 px, fractional parts included."""
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 4000 - 2000


def test_themes_start_with_the_required_six_and_match_the_caption_words():
    assert THEMES[:6] == REQUIRED and len(THEMES) >= 8
    assert tuple(captions.THEME_WORDS) == THEMES == tuple(captions.PLACES)
    assert captions.MOTIONS == MOTIONS


def test_render_shape_range_and_bad_input():
    frames = World("meadow", 1).render(torch.zeros(3, 2), width=40, height=24)
    assert frames.shape == (3, 3, 24, 40) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    with pytest.raises(ValueError, match="unknown theme"):
        World("jungle", 0)
    with pytest.raises(ValueError, match="float"):
        World("snow", 0).render(torch.zeros(2, 3))


def test_same_seed_same_frames_other_seed_other_map():
    xy = _views(8)
    assert torch.equal(World("desert", 7).render(xy), World("desert", 7).render(xy))
    assert (World("desert", 7).render(xy) - World("desert", 8).render(xy)).abs().mean() > 0.02


@pytest.mark.parametrize("shift", [(16, 0), (0, 16), (-5, 23)])
def test_shifted_camera_shifts_the_image_exactly(shift):
    dx, dy = shift
    world, xy = World("lava", 3), _views(8, seed=1)
    xy = torch.cat([xy, torch.tensor([[1e6 + 0.25, -1e6 - 0.625]], dtype=torch.float64)])  # far away too
    a = world.render(xy)
    b = world.render(xy + torch.tensor([dx, dy], dtype=torch.float64))
    h, w = a.shape[-2:]
    crop_a = a[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    crop_b = b[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    assert torch.allclose(crop_a, crop_b, atol=1e-5, rtol=0)


@pytest.mark.parametrize("theme", THEMES)
def test_sub_pixel_moves_change_the_image_smoothly(theme):
    world, xy = World(theme, 5), _views(8, seed=2)
    a = world.render(xy)
    for step in ([0.02, 0.0], [0.0, 0.02]):  # no hard edges: a small move gives a small change
        assert (world.render(xy + torch.tensor(step, dtype=torch.float64)) - a).abs().max() < 0.1
    half, one = world.render(xy + torch.tensor([0.5, 0.0])), world.render(xy + torch.tensor([1.0, 0.0]))
    excess = torch.maximum(torch.minimum(a, one) - half, half - torch.maximum(a, one))
    assert (excess > 0.05).float().mean() < 0.01  # half a pixel lies between its neighbours...
    assert (half - (a + one) / 2).abs().mean() < 0.5 * (one - a).abs().mean()  # ...near their mean


def _stats(theme: str) -> tuple[torch.Tensor, torch.Tensor]:
    frames = World(theme, 11).render(_views(16, seed=3))
    return frames.mean(dim=(0, 2, 3)), frames.permute(1, 0, 2, 3).reshape(3, -1)  # (3,), (3, pixels)


def test_ground_colours_mean_what_the_theme_says():
    snow, _ = _stats("snow")
    assert (snow > 0.8).all()
    (r, g, b), _ = _stats("ocean")
    assert b > 0.5 and b > g + 0.2 and b > r + 0.3
    (r, g, b), _ = _stats("desert")
    assert r > g > b and r > 0.75 and g > 0.6
    (r, g, b), _ = _stats("meadow")
    assert g > r + 0.2 and g > b + 0.2
    lava, pixels = _stats("lava")
    assert lava.mean() < 0.15
    orange_red = (pixels[0] > 0.85) & (pixels[1] < 0.6) & (pixels[2] < 0.25)
    assert orange_red.float().mean() > 0.01
    (r, g, b), pixels = _stats("night city")
    assert b < 0.3 and r < 0.15 and g < 0.15 and b > r and b > g
    assert (pixels.min(dim=0).values > 0.5).float().mean() > 0.01  # bright lights


def test_extra_themes_differ_in_colour_from_every_other_theme():
    means = torch.stack([_stats(t)[0] for t in THEMES])  # (themes, 3)
    distance = torch.cdist(means, means) + torch.eye(len(THEMES))
    assert distance.min() > 0.12


@pytest.mark.parametrize("theme", THEMES)
def test_places_differ_and_landmarks_have_dark_outlines(theme):
    world, xy = World(theme, 2), _views(8, seed=4)
    assert (world.render(xy) - world.render(xy + 300)).abs().mean() > 0.02
    if theme not in ("lava", "night city", "forest"):  # the dark grounds are darker than any outline test
        frames = world.render(xy)
        ground = frames.median(dim=-1).values.median(dim=-1).values  # (N, 3) per view
        dark = frames.max(dim=1).values < 0.2  # (N, H, W): outline pixels
        assert (ground.max(dim=1).values > 0.4).all() and 0.005 < dark.float().mean() < 0.15


def test_camera_path_segments_speed_and_round_trip():
    path = camera_path((10.0, -4.0), [("right", 64), ("left", 64)])
    assert path.shape == (128, 2) and path[0].tolist() == [10.0, -4.0]
    steps = path.diff(dim=0)
    assert torch.equal(steps[:63], torch.tensor([[CAMERA_SPEED_PX_PER_FRAME, 0.0]]).double().expand(63, 2))
    assert (steps.norm(dim=1) == CAMERA_SPEED_PX_PER_FRAME).all()
    assert (path[-1] + torch.tensor(velocity("left"), dtype=torch.float64)).tolist() == [10.0, -4.0]
    script = [("up", 5), ("still", 3), ("default", 4), ("down", 2)]
    path = camera_path(torch.tensor([0.5, 0.5]), script)
    assert path.shape == (14, 2)
    assert path[5].tolist() == [0.5, 0.5 - 5 * CAMERA_SPEED_PX_PER_FRAME] == path[8].tolist()
    assert (path[12] - path[8]).tolist() == [4 * DEFAULT_DRIFT[0], 4 * DEFAULT_DRIFT[1]]
    assert velocity("still") == (0.0, 0.0) and velocity("default") == DEFAULT_DRIFT
    with pytest.raises(ValueError, match="unknown motion"):
        velocity("forward")


HAND_WRITTEN = [
    ("a snowy field, the camera pans right", ("snow", "right")),
    ("Waves of the sea, camera holds still", ("ocean", "still")),
    ("dunes", ("desert", "default")),
    ("volcanic plain, camera pans up", ("lava", "up")),
    ("a city at night, camera pans down", ("night city", "down")),
    ("Static camera. NEON streets!", ("night city", "still")),
    ("grassy lawn; panning slowly to the left", ("meadow", "left")),
    ("icy sea", ("snow", "default")),
    ("camera moves from left to right over the meadow", ("meadow", "right")),
    ("a photo of a red fox", (None, "default")),
]


@pytest.mark.parametrize(("prompt", "expected"), HAND_WRITTEN)
def test_hand_written_prompts(prompt, expected):
    assert parse_prompt(prompt) == expected


def test_random_captions_parse_back_to_theme_and_motion():
    rng = random.Random(0)
    seen = set()
    for _ in range(5000):
        theme, motion = rng.choice(THEMES), rng.choice(MOTIONS)
        caption = random_caption(rng, theme, motion)
        assert parse_prompt(caption) == (theme, motion), caption
        seen.add(caption)
    assert len(seen) > 4000
    assert len(captions._MOTION_TEMPLATES) >= 20


def test_distractors_name_no_theme_and_no_motion():
    words = captions.ADJECTIVES + captions.TIMES + captions.STYLES + captions.STYLE_TAGS
    assert all(parse_prompt(w) == (None, "default") for w in words)


def test_captions_module_does_not_import_torch():
    code = "import sys, dysink_cli.toy.captions; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
