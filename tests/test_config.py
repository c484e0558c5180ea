"""Config precedence (CLI > timeline > preset > default), errors, shipped presets and packaging."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dysink_cli.cli.app import to_toml
from dysink_cli.cli.options import RenderOptions, build_config
from dysink_cli.config import RenderConfig, config_to_dict, list_presets, load_preset_data, resolve_config
from dysink_cli.errors import CheckpointError, ConfigError, TimelineError
from dysink_cli.timeline import Timeline

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
OURS = ("dysink", "dysink-paper", "longlive", "self-forcing", "tiny")


def test_precedence_default_preset_timeline_cli(tmp_path: Path) -> None:
    weights = tmp_path / "w"
    weights.mkdir()
    defaults = RenderConfig()
    assert defaults.dysink.top_k == 2 and defaults.output.crf == 18
    tl = Timeline.from_dict(
        {"settings": {"dysink": {"top_k": 5}, "output": {"crf": 20}}, "segment": [{"at": 0, "prompt": "a"}]}
    )
    # preset longlive sets window 12; the timeline sets top_k 5 and crf 20; the CLI sets top_k 7 and crf 30
    opts = RenderOptions(preset="longlive", overrides=("dysink.top_k=7",), weights=weights, crf=30)
    cfg = build_config(opts, tl, env={})
    assert cfg.engine.window_frames == 12 and cfg.engine.sink_frames == 3  # preset over default
    assert cfg.dysink.top_k == 7 and cfg.output.crf == 30  # CLI over timeline over preset
    assert cfg.dysink.dedup_threshold == defaults.dysink.dedup_threshold  # untouched default
    assert cfg.model.weights == str(weights)


def test_preset_choice_and_weights_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tl = Timeline.from_prompt("x")
    assert build_config(RenderOptions(), tl, env={}).model.name == "tiny"
    with_env = build_config(RenderOptions(), tl, env={"DYSINK_WEIGHTS": str(b)})
    assert with_env.engine.policy == "dysink" and with_env.model.weights == str(b)
    assert build_config(RenderOptions(weights=a), tl, env={"DYSINK_WEIGHTS": str(b)}).model.weights == str(a)
    with pytest.raises(CheckpointError, match="needs its weights"):
        build_config(RenderOptions(preset="self-forcing"), tl, env={})


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'dysink.topk'.*did you mean 'top_k'"):
        resolve_config("tiny", ["dysink.topk=3"])
    with pytest.raises(ConfigError, match=r"unknown config key 'engnie'.*did you mean 'engine'"):
        resolve_config("tiny", ["engnie.window_frames=3"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("engine.window_frames=wide", "must be an integer"),
        ("dysink.gate_threshold=true", "must be a number"),
        ("sampler.warp=1", "must be true or false"),
        ("output.fps=0", "must be positive"),
        ("output.width=100", "not a positive multiple of 16"),
        ("engine.policy=sliding", "is not one of"),
        ("dysink.top_k", "is not key=value"),
    ],
)
def test_bad_types_and_values(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config("tiny", [override])


def test_timeline_settings_errors_name_the_timeline() -> None:
    tl = Timeline.from_dict(
        {"settings": {"dysink": {"topk": 1}}, "segment": [{"at": 0, "prompt": "a"}]}, "t.toml"
    )
    with pytest.raises(TimelineError, match=r"t.toml \[settings\]: unknown config key 'dysink.topk'"):
        build_config(RenderOptions(), tl, env={})


@pytest.mark.parametrize("name", sorted(list_presets()))
def test_every_shipped_preset_resolves_and_round_trips(name: str) -> None:
    cfg = resolve_config(name)
    data = load_preset_data(name)
    assert isinstance(data.get("description"), str) and data["description"]
    shown = tomllib.loads(to_toml(config_to_dict(cfg)))
    assert resolve_config("tiny", (), shown) == cfg  # what `presets show` prints is a complete preset


def test_our_presets_hold_the_documented_values() -> None:
    assert set(OURS) <= set(list_presets())
    dysink, paper = resolve_config("dysink"), resolve_config("dysink-paper")
    assert (dysink.model.name, dysink.engine.window_frames, dysink.engine.sink_frames) == ("wan-1.3b", 9, 0)
    assert (dysink.dysink.top_k, dysink.dysink.dedup_threshold, dysink.dysink.gate) == (2, 0.95, "per-entry")
    assert dysink.dysink.gate_threshold == 0.8
    assert (paper.dysink.dedup_threshold, paper.dysink.gate, paper.dysink.gate_threshold) == (
        0.98,
        "max",
        0.5,
    )
    longlive, sf, tiny = resolve_config("longlive"), resolve_config("self-forcing"), resolve_config("tiny")
    assert (longlive.engine.policy, longlive.engine.sink_frames, longlive.engine.window_frames) == (
        "static-sink",
        3,
        12,
    )
    assert (sf.engine.policy, sf.engine.window_frames) == ("window", 12) and "21" in sf.description
    assert (tiny.model.name, tiny.output.width, tiny.output.height) == ("tiny", 64, 48)
    assert "untrained" in tiny.description


def test_pyproject_lists_every_package() -> None:
    """Packages are listed by hand (presets/ is remapped); a new subpackage must be added there."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dysink_cli").rglob("__init__.py")}
    assert found | {"dysink_cli.presets"} <= listed, f"add to pyproject.toml: {sorted(found - listed)}"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert len(quickstart) == 3 and quickstart[1].startswith("dysink render --prompt")
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and line[0] != "#"]
    assert ci_lines[-1] == quickstart[2] == "python -m pytest -q"


def test_rope_jitter_options_are_checked() -> None:
    from dysink_cli.config import resolve_config
    from dysink_cli.errors import ConfigError

    assert resolve_config("lol").rope.jitter == 0.8
    for bad in (
        'rope.jitter_axes="x"',
        "rope.jitter_heads=2.0",
        "rope.jitter=1.5",
        'rope.jitter_scope="each"',
    ):
        with pytest.raises(ConfigError):
            resolve_config("tiny", [bad])
