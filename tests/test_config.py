"""Config precedence (CLI > timeline > preset > default), errors, shipped presets and packaging."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from dysink_cli.cli.app import to_toml
from dysink_cli.cli.options import RenderOptions, resolve_render_config
from dysink_cli.config import (
    ATTENTION,
    BANK_FORMATS,
    FilesSection,
    RenderConfig,
    build_config,
    config_to_dict,
    list_presets,
    load_preset_data,
    resolve_config,
)
from dysink_cli.errors import ConfigError, TimelineError, WeightsError
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
    cfg = resolve_render_config(opts, tl, env={})
    assert cfg.engine.window_frames == 12 and cfg.engine.sink_frames == 3  # preset over default
    assert cfg.dysink.top_k == 7 and cfg.output.crf == 30  # CLI over timeline over preset
    assert cfg.dysink.dedup_threshold == defaults.dysink.dedup_threshold  # untouched default
    assert cfg.model.weights == str(weights)


def test_preset_choice_and_weights_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    tl = Timeline.from_prompt("x")
    assert resolve_render_config(RenderOptions(), tl, env={}).model.name == "toy"
    with_env = resolve_render_config(RenderOptions(), tl, env={"DYSINK_WEIGHTS": str(b)})
    assert with_env.engine.policy == "dysink" and with_env.model.weights == str(b)
    assert resolve_render_config(
        RenderOptions(weights=a), tl, env={"DYSINK_WEIGHTS": str(b)}
    ).model.weights == str(a)
    with pytest.raises(WeightsError, match="needs its weights"):
        resolve_render_config(RenderOptions(preset="self-forcing"), tl, env={})


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
        ("output.fps=0", r"output.fps = 0 is not in \[1, 240\]"),
        ("output.width=100", "output.width = 100 is not a positive multiple of 16 up to 8192"),
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
        resolve_render_config(RenderOptions(), tl, env={})


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


# ---- every check lives in the sections and names the key, the value and the valid range ----------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ('model.name="wan"', "model.name = 'wan' is not one of tiny, toy, wan-1.3b"),
        ('model.dtype="bf16"', "model.dtype = 'bf16' is not one of bfloat16, float16, float32"),
        ('model.attention="xformers"', "model.attention = 'xformers' is not one of auto, sdpa, cudnn, flash"),
        ('model.pe_core="PE-Core-G"', "model.pe_core = 'PE-Core-G' is not one of PE-Core-T16-384, "),
        ("output.crf=99", r"output.crf = 99 is not in \[0, 51\]"),
        ("output.crf=-1", r"output.crf = -1 is not in \[0, 51\]"),
        ("output.fps=241", r"output.fps = 241 is not in \[1, 240\]"),
        ("output.width=0", "output.width = 0 is not a positive multiple of 16 up to 8192"),
        ("output.height=8208", "output.height = 8208 is not a positive multiple of 16 up to 8192"),
        ("output.checkpoint_every_blocks=0", "output.checkpoint_every_blocks = 0 is not >= 1"),
        ("output.checkpoint_overhead=1.0", r"output.checkpoint_overhead = 1.0 is not in \[0, 1\)"),
        ("output.checkpoint_overhead=-0.1", r"output.checkpoint_overhead = -0.1 is not in \[0, 1\)"),
        ("sampler.shift=0", "sampler.shift = 0.0 is not > 0"),
        ("sampler.shift=inf", r"sampler.shift = inf is not a finite number \(valid: > 0\)"),
        ("sampler.steps=[]", r"sampler.steps = \[\] is empty"),
        ("sampler.steps=[1000, 1000, 500]", "is not strictly decreasing in 1..1000"),
        ("sampler.steps=[750, 1000]", "is not strictly decreasing in 1..1000"),
        ("sampler.steps=[1001, 500]", "is not strictly decreasing in 1..1000"),
        ("sampler.steps=[1000, 0]", "is not strictly decreasing in 1..1000"),
        ("sampler.context_noise=-1", r"sampler.context_noise = -1 is not in \[0, 1000\]"),
        ("dysink.top_k=-1", "dysink.top_k = -1 is not >= 0"),
        ("dysink.dedup_threshold=-0.1", r"dysink.dedup_threshold = -0.1 is not in \[0, 2\]"),
        (
            "dysink.dedup_threshold=nan",
            r"dysink.dedup_threshold = nan is not a finite number \(valid: \[0, 2\]\)",
        ),
        ("dysink.gate_threshold=1.5", r"dysink.gate_threshold = 1.5 is not in \[0, 1\]"),
        ("dysink.query_blocks=-1", "dysink.query_blocks = -1 is not >= 0"),
        ("bank.max_entries=-1", "bank.max_entries = -1 is not >= 0"),
        ("bank.ram_gb=-1", "bank.ram_gb = -1.0 is not >= 0"),
        ("bank.gpu_entries=-2", "bank.gpu_entries = -2 is not >= 0"),
        ("bank.disk_gb=0", "bank.disk_gb = 0.0 is not > 0"),
        ('bank.dtype="fp4"', "bank.dtype = 'fp4' is not one of same, fp8"),
        ("rope.max_distance=-1", "rope.max_distance = -1 is not >= 0"),
        ("rope.jitter=-0.5", r"rope.jitter = -0.5 is not in \[0, 1\)"),
        ("engine.frames_per_block=0", "engine.frames_per_block = 0 is not >= 1"),
        ("engine.sink_frames=9", r"engine.sink_frames = 9 is not in \[0, 9\)"),
    ],
)
def test_each_value_is_checked_when_the_config_is_built(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        resolve_config("tiny", [override])
    assert "\n" not in str(err.value) and err.value.hint


def test_the_edges_are_valid() -> None:
    edges = [
        "output.crf=0", "output.crf=51", "output.fps=1", "output.fps=240", "output.width=8192",
        "output.checkpoint_every_blocks=1", "output.checkpoint_overhead=0", "sampler.steps=[1000]",
        "sampler.steps=[1]", "dysink.dedup_threshold=1.01", "dysink.dedup_threshold=2",
        "dysink.gate_threshold=0", "dysink.gate_threshold=1", "bank.ram_gb=0", "bank.max_entries=0",
        'model.name="toy"', 'model.dtype="float16"', 'model.pe_core="PE-Core-L14-336"',
        'model.attention="flash"', 'bank.dtype="fp8"',
    ]  # fmt: skip
    for override in edges:
        resolve_config("tiny", [override])


def test_every_float_setting_must_be_finite() -> None:
    sections = {f.name: f.type for f in dataclasses.fields(RenderConfig) if f.name != "description"}
    floats = [
        f"{name}.{f.name}"
        for name in sections
        for f in dataclasses.fields(getattr(RenderConfig(), name))
        if f.type == "float"
    ]
    assert len(floats) >= 8, floats
    for key in floats:
        for bad in ("nan", "inf", "-inf"):
            with pytest.raises(ConfigError, match=f"{key} = .* is not a finite number"):
                resolve_config("tiny", [f"{key}={bad}"])


def test_lists_kept_beside_torch_modules_match_them() -> None:
    """config keeps the valid names as tuples (model.attention and engine.memory import torch)."""
    from dysink_cli.engine.memory.store import KV_FORMATS
    from dysink_cli.model.attention import BACKENDS
    from dysink_cli.model.config import PE_CORE_CONFIGS

    assert ATTENTION == ("auto", *BACKENDS)
    assert BANK_FORMATS == KV_FORMATS
    assert "PE-Core-S16-384" in PE_CORE_CONFIGS and RenderConfig().model.pe_core in PE_CORE_CONFIGS


def test_the_bank_is_checked_before_the_engine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bank.disk_gb = -1.0 is not > 0"):
        resolve_render_config(
            RenderOptions(overrides=("bank.disk_gb=-1",)), Timeline.from_prompt("x"), env={}
        )


def test_output_container_is_gone_and_says_why() -> None:
    with pytest.raises(ConfigError, match="output.container = 'mkv-or-fmp4' is no longer a setting") as err:
        resolve_config("tiny", ['output.container="mkv-or-fmp4"'])
    assert "suffix" in err.value.hint and ".mkv" in err.value.hint
    assert "container" not in {f.name for f in dataclasses.fields(RenderConfig().output)}


def test_old_checkpoints_table_is_read_as_files(tmp_path: Path) -> None:
    old = tmp_path / "old.toml"
    old.write_text('[model]\nname = "wan-1.3b"\n[checkpoints]\nvae = "vae.pth"\nloras = ["a.pt"]\n')
    with pytest.warns(DeprecationWarning, match=r"\[checkpoints\] is now \[files\]"):
        cfg = resolve_config(str(old))
    assert cfg.files == FilesSection(vae="vae.pth", loras=("a.pt",))
    with pytest.warns(DeprecationWarning):
        assert resolve_config("tiny", ['checkpoints.t5="t5.pth"']).files.t5 == "t5.pth"
    with pytest.warns(DeprecationWarning):
        assert build_config({"checkpoints": {"use_ema": False}}).files.use_ema is False
    both = tmp_path / "both.toml"
    both.write_text('[checkpoints]\nvae = "a"\n[files]\nvae = "b"\n')
    with pytest.raises(ConfigError, match=r"both \[checkpoints\] and \[files\]"):
        resolve_config(str(both))
    assert "checkpoints" not in config_to_dict(cfg) and config_to_dict(cfg)["files"]["vae"] == "vae.pth"
