"""The user's path against the reference: each pipeline fixture run again through the preset a user
would pick (preset -> resolve_config -> render.assemble.loop_spec), with only the overrides that
the fixture's tiny sizes need. A preset that silently lost its static sink, or a wrong timestep
warp, changes the rollout and fails here. Imports config, render.assemble, engine and parity.
"""

from __future__ import annotations

from dataclasses import replace

from dysink_cli.config import resolve_config
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.parity.checks import Check, compare_decisions, compare_tensor
from dysink_cli.parity.fixture import Fixture
from dysink_cli.parity.procedures import listed_timesteps, run_pipeline, run_rolling_sink
from dysink_cli.render.assemble import loop_spec

# fixture -> (preset, overrides): the overrides are the fixture's sizes (windows of a tiny model,
# the thresholds the fixture was made with); everything else comes from the preset itself.
PRESET_RUNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "causal_window": ("self-forcing", ("engine.window_frames=6",)),
    "causal_static_sink": ("longlive", ("engine.window_frames=9",)),
    "dysink_rollout": (
        "dysink",
        ("engine.window_frames=6", "dysink.dedup_threshold=0.975", "dysink.gate_threshold=0.5"),
    ),
    "interactive_switch": (
        "dysink",
        ("engine.window_frames=6", "dysink.dedup_threshold=0.98", "dysink.gate_threshold=0.5"),
    ),
    "rolling_sink": ("rolling-sink", ("engine.horizon_frames=12", "engine.window_frames=12")),
}


def preset_spec(fixture: str, extra: tuple[str, ...] = ()) -> LoopSpec:
    """The loop settings a user gets from the fixture's preset (plus `extra` --set overrides)."""
    preset, overrides = PRESET_RUNS[fixture]
    return loop_spec(resolve_config(preset, [*overrides, *extra]))


def preset_checks(fx: Fixture, extra: tuple[str, ...] = ()) -> list[Check]:
    """The fixture's outputs and decisions, reproduced through its preset (empty: no preset run)."""
    if fx.name not in PRESET_RUNS:
        return []
    preset = PRESET_RUNS[fx.name][0]
    spec = preset_spec(fx.name, extra)
    run = run_rolling_sink if fx.kind() == "rolling_sink" else run_pipeline
    outputs, decisions = run(fx, spec)
    names = ["output_latents"] if fx.kind() == "rolling_sink" else ["latents"]
    checks = [compare_tensor(fx, name, outputs[name]) for name in names]
    checks += compare_decisions(fx, decisions)
    if "pipeline" in fx.config and "warped_timesteps" in fx.config["pipeline"]:
        computed, listed = listed_timesteps(fx)
        ok = listed is not None and all(abs(a - b) < 1e-4 for a, b in zip(computed, listed, strict=True))
        checks.append(Check("timesteps", ok, f"computed {list(computed)}, fixture lists {listed}"))
    return [replace(c, name=f"{c.name} (preset {preset})") for c in checks]
