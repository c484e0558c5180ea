"""The presets a user picks reproduce the reference fixtures (outputs and decisions), and each
preset's effective loop settings are the release configs'."""

from __future__ import annotations

import pytest

from dysink_cli.config import resolve_config
from dysink_cli.parity.fixture import Fixture
from dysink_cli.parity.presets import PRESET_RUNS, preset_checks
from dysink_cli.render.assemble import loop_spec
from tests.conftest import FIXTURES

WARPED = (1000.0, 937.5, 833.3333129882812, 625.0)


@pytest.mark.parametrize("name", sorted(PRESET_RUNS))
def test_the_preset_path_reproduces_the_fixture(name: str) -> None:
    checks = preset_checks(Fixture.load(FIXTURES / name))
    assert checks and all(c.passed for c in checks), [c.line() for c in checks if not c.passed]


@pytest.mark.parametrize(
    ("name", "mutation"),
    [
        ("causal_static_sink", "engine.sink_frames=0"),  # the static sink dropped from longlive
        ("causal_window", "sampler.warp=false"),  # the timesteps not warped
        ("causal_window", "sampler.shift=3.0"),  # warped with the wrong shift
        ("dysink_rollout", "dysink.top_k=1"),
    ],
)
def test_a_mutated_preset_fails(name: str, mutation: str) -> None:
    checks = preset_checks(Fixture.load(FIXTURES / name), (mutation,))
    assert any(not c.passed for c in checks)


RELEASE = {  # preset -> (policy, window, sink, top_k, dedup, gate rule, gate threshold)
    "self-forcing": ("window", 12, 0, None, None, None, None),
    "longlive": ("static-sink", 12, 3, None, None, None, None),
    "lol": ("static-sink", 12, 3, None, None, None, None),
    "dysink": ("dysink", 9, 0, 2, 0.95, "per-entry", 0.8),
    "dysink-paper": ("dysink", 9, 0, 2, 0.98, "max", 0.5),
    "rolling-sink": ("rolling-sink", 21, 0, None, None, None, None),
}


@pytest.mark.parametrize("preset", sorted(RELEASE))
def test_each_preset_has_the_release_loop_settings(preset: str) -> None:
    cfg = resolve_config(preset)
    spec = loop_spec(cfg)
    policy, window, sink, top_k, dedup, gate, threshold = RELEASE[preset]
    assert (spec.policy, spec.window_frames, spec.sink_frames) == (policy, window, sink)
    assert spec.frames_per_block == 3 and spec.timesteps == WARPED and spec.shift == 5.0
    if policy == "dysink":
        assert (spec.top_k, spec.dedup_threshold, spec.gate_rule, spec.gate_threshold) == (
            top_k, dedup, gate, threshold,
        )  # fmt: skip
        assert spec.capacity_frames == window + 3 * top_k
    if preset == "lol":
        assert cfg.rope.jitter == 0.8
