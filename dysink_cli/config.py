"""Render configuration: frozen dataclasses loaded from TOML presets, with `--set` overrides.

Precedence lives in one place, `resolve_config`: CLI `--set` > preset file > dataclass defaults.
Unknown keys are errors that suggest the closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field, fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from dysink_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

POLICIES = ("window", "static-sink", "dysink", "rolling-sink")
GATE_RULES = ("per-entry", "max", "off")


@dataclass(frozen=True)
class ModelSection:
    """Which networks to run and where their weights are."""

    name: str = "tiny"  # "tiny" (embedded demo) or "wan-1.3b"
    weights: str = ""  # folder with checkpoints; "" = embedded tiny weights
    dtype: str = "bfloat16"  # compute dtype on GPU; CPU always runs float32
    attention: str = "auto"  # "auto" | "sdpa" | "cudnn" | "flash"
    compile: bool = True  # CUDA: fuse the DiT block's elementwise chains with torch.compile
    cuda_graphs: bool = True  # CUDA: replay the block loop's repeated DiT calls from CUDA graphs
    overlap_decode: bool = False  # CUDA: decode block n on a side stream beside block n+1 (no gain measured)
    pe_core: str = "PE-Core-S16-384"


@dataclass(frozen=True)
class EngineSection:
    """Cache policy and block geometry."""

    policy: str = "dysink"
    window_frames: int = 9  # local attention window in latent frames (includes sink frames)
    sink_frames: int = 0  # static sink (LongLive)
    frames_per_block: int = 3
    horizon_frames: int = 21  # rolling-sink training horizon
    noise: str = "independent"  # "independent" | "tiled" (Rolling Sink CLI convention)

    def __post_init__(self) -> None:
        _choice("engine.policy", self.policy, POLICIES)
        _choice("engine.noise", self.noise, ("independent", "tiled"))
        if self.frames_per_block < 1:
            raise ConfigError("engine.frames_per_block must be >= 1", "use 3 for Wan models")
        if self.window_frames < self.frames_per_block:
            raise ConfigError(
                f"engine.window_frames {self.window_frames} is smaller than a block "
                f"({self.frames_per_block} frames)",
                "set engine.window_frames to at least one block",
            )
        if self.sink_frames < 0 or self.sink_frames >= self.window_frames:
            raise ConfigError(
                f"engine.sink_frames {self.sink_frames} must be in [0, window_frames)",
                "the sink counts toward the window; lower it or widen the window",
            )
        if self.policy == "rolling-sink" and (
            self.horizon_frames % self.frames_per_block or self.horizon_frames <= 2 * self.frames_per_block
        ):
            raise ConfigError(
                f"engine.horizon_frames {self.horizon_frames} must be a multiple of "
                f"{self.frames_per_block} above {2 * self.frames_per_block}",
                "Self-Forcing's horizon is 21",
            )


@dataclass(frozen=True)
class DySinkSection:
    """Memory bank, retrieval and the sink anomaly gate (DySink section 3)."""

    top_k: int = 2
    dedup_threshold: float = 0.95
    gate: str = "per-entry"
    gate_threshold: float = 0.8
    descriptors: str = "standalone"  # "standalone" (reference) | "shared" (from the streamed frames)
    query_blocks: int = 0  # 0 = window_frames // frames_per_block (reference)
    exclusion: str = "reference"  # "reference" (one block wider than the window) | "window"
    retrieved_bf16_roundtrip: bool = True

    def __post_init__(self) -> None:
        _choice("dysink.gate", self.gate, GATE_RULES)
        _choice("dysink.descriptors", self.descriptors, ("standalone", "shared"))
        _choice("dysink.exclusion", self.exclusion, ("reference", "window"))
        if self.top_k < 0:
            raise ConfigError("dysink.top_k must be >= 0", "use 2 (the release)")


@dataclass(frozen=True)
class BankSection:
    """Where memory-bank entries live (GPU cache, pinned RAM, disk)."""

    gpu_entries: int = 4
    ram_gb: float = 8.0
    disk_gb: float = 64.0
    max_entries: int = 0  # 0 = unlimited
    dtype: str = "same"  # "same" | "fp8"


@dataclass(frozen=True)
class RopeSection:
    """Positions: absolute (reference) or relative with a clamp; LoL per-head jitter."""

    mode: str = "absolute"
    max_distance: int = 240
    jitter: float = 0.0  # LoL sigma; 0 = off
    jitter_heads: float = 1.0
    jitter_axes: str = "t"
    jitter_scope: str = "shared"

    def __post_init__(self) -> None:
        _choice("rope.mode", self.mode, ("absolute", "relative"))
        _choice("rope.jitter_scope", self.jitter_scope, ("shared", "per_layer"))
        if not self.jitter_axes or set(self.jitter_axes) - set("thw"):
            raise ConfigError(
                f"rope.jitter_axes = {self.jitter_axes!r} is not made of t, h, w", 'use "t" (LoL)'
            )
        if not 0 <= self.jitter_heads <= 1:
            raise ConfigError(
                f"rope.jitter_heads = {self.jitter_heads} is not a fraction", "use 0..1 (1 = all heads)"
            )
        if self.jitter < 0 or self.jitter >= 1:
            raise ConfigError(f"rope.jitter {self.jitter} must be in [0, 1)", "LoL uses 0.8")


@dataclass(frozen=True)
class SamplerSection:
    """Few-step flow-matching schedule."""

    steps: tuple[int, ...] = (1000, 750, 500, 250)
    shift: float = 5.0
    warp: bool = True
    context_noise: int = 0


@dataclass(frozen=True)
class OutputSection:
    """Video geometry and encoding."""

    width: int = 832
    height: int = 480
    fps: int = 16
    crf: int = 18
    container: str = "mkv-or-fmp4"
    checkpoint_every_blocks: int = 20
    checkpoint_overhead: float = 0.05  # periodic checkpoints take at most this share of the time

    def __post_init__(self) -> None:
        if not 0 <= self.checkpoint_overhead < 1:
            raise ConfigError(
                f"output.checkpoint_overhead {self.checkpoint_overhead} is not in [0, 1)",
                "use 0.05 (5 % of the render time), or 0 to checkpoint every checkpoint_every_blocks",
            )
        if self.width % 16 or self.height % 16 or self.width <= 0 or self.height <= 0:
            raise ConfigError(
                f"output size {self.width}x{self.height} is not a positive multiple of 16",
                "use 832x480 for Wan2.1-1.3B",
            )
        if self.fps <= 0:
            raise ConfigError(f"output.fps {self.fps} must be positive", "Wan renders at 16 fps")


@dataclass(frozen=True)
class CheckpointsSection:
    """Which file in the weights folder plays which role; "" = found by its standard name.

    Paths are relative to the weights folder. LoRAs are merged in the order given.
    """

    generator: str = ""
    loras: tuple[str, ...] = ()
    use_ema: bool = True
    vae: str = ""
    t5: str = ""
    tokenizer: str = ""
    pe: str = ""


@dataclass(frozen=True)
class RenderConfig:
    """Everything a render needs besides the prompt(s)."""

    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    engine: EngineSection = field(default_factory=EngineSection)
    dysink: DySinkSection = field(default_factory=DySinkSection)
    bank: BankSection = field(default_factory=BankSection)
    rope: RopeSection = field(default_factory=RopeSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    output: OutputSection = field(default_factory=OutputSection)
    checkpoints: CheckpointsSection = field(default_factory=CheckpointsSection)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{key} = {value!r} is not one of {', '.join(allowed)}", f"set {key} to one of them"
        )


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(options)}"


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """Check/convert a TOML or --set value to the field's declared type."""
    origin = get_origin(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}", f"write {key} = [...]")
        item_type = get_args(annotation)[0]
        return tuple(_coerce(key, v, item_type) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}", f"write {key}=true")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}", f"write {key}=<integer>")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key} must be a number, got {value!r}", f"write {key}=<number>")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}", f'write {key}="..."')
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a nested dict, rejecting unknown keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'", _suggest(key, names))
        annotation = hints[key]
        if is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' must be a table", f"write [{full}] ...")
            kwargs[key] = _build(annotation, value, f"{full}.")
        else:
            kwargs[key] = _coerce(full, value, annotation)
    return cls(**kwargs)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as nested plain data (for `presets show`, logs and checkpoints)."""
    return dataclasses.asdict(cfg)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'engine.window_frames=12' -> {'engine': {'window_frames': 12}} (value parsed as TOML)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not key=value", "write e.g. --set dysink.top_k=3")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # bare words are strings: --set engine.policy=window
    node: dict[str, Any] = {}
    cursor = node
    parts = key.split(".")
    for part in parts[:-1]:
        cursor[part] = {}
        cursor = cursor[part]
    cursor[parts[-1]] = value
    return node


def preset_dir() -> Path:
    """Folder of the shipped presets (package data, mirrored from the repo's presets/)."""
    try:
        return Path(str(resources.files("dysink_cli.presets")))
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return Path(__file__).resolve().parent.parent / "presets"


def list_presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(preset_dir().glob("*.toml"))}


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", "check the path") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{what} {path} is not valid TOML: {err}", "fix the syntax") from None


def load_preset_data(name_or_path: str) -> dict[str, Any]:
    """Raw TOML data of a named preset or a preset file path."""
    presets = list_presets()
    if name_or_path in presets:
        return read_toml(presets[name_or_path], "preset")
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return read_toml(path, "preset")
    raise ConfigError(f"unknown preset '{name_or_path}'", _suggest(name_or_path, list(presets)))


def resolve_config(
    preset: str = "tiny", overrides: list[str] | tuple[str, ...] = (), extra: dict[str, Any] | None = None
) -> RenderConfig:
    """Defaults < preset < `extra` (e.g. a timeline's settings) < `--set` overrides."""
    data = load_preset_data(preset)
    if extra:
        data = _merge(data, extra)
    for text in overrides:
        data = _merge(data, parse_override(text))
    return _build(RenderConfig, data)


def build_config(data: dict[str, Any]) -> RenderConfig:
    """A RenderConfig from nested plain data (e.g. config_to_dict's output), validated."""
    return _build(RenderConfig, data)


def with_changes(cfg: RenderConfig, section: str, **changes: Any) -> RenderConfig:
    """A copy of `cfg` with fields of one section replaced (validated again)."""
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
