"""Loading settings: presets and TOML files, `--set` overrides, unknown-key suggestions.

Precedence lives in one place, `resolve_config`: CLI `--set` > timeline settings > preset file >
dataclass defaults. Old table names are read under their new ones for one release; removed keys are
errors that say what replaced them. Imports config.sections and errors.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import warnings
from dataclasses import fields, is_dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from dysink_cli.config.sections import RenderConfig
from dysink_cli.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RENAMED_TABLES = {"checkpoints": "files"}  # [checkpoints] is read as [files] for one release
REMOVED_KEYS = {
    "output.container": "the container follows the output file's suffix: -o video.mp4 or -o video.mkv",
}


def suggest(name: str, options: list[str] | tuple[str, ...], noun: str = "keys") -> str:
    """'did you mean ...?' for the closest option, else the list of valid ones."""
    close = difflib.get_close_matches(name, options, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid {noun}: {', '.join(options)}"


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
    """Build dataclass `cls` from a nested dict, rejecting unknown and removed keys."""
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if full in REMOVED_KEYS:
            raise ConfigError(f"{full} = {value!r} is no longer a setting", REMOVED_KEYS[full])
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'", suggest(key, names))
        annotation = hints[key]
        if is_dataclass(annotation):
            if not isinstance(value, dict):
                raise ConfigError(f"'{full}' must be a table", f"write [{full}] ...")
            kwargs[key] = _build(annotation, value, f"{full}.")
        else:
            kwargs[key] = _coerce(full, value, annotation)
    return cls(**kwargs)


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """Old table names read under their new ones (e.g. [checkpoints] -> [files]), for one release."""
    old = [name for name in RENAMED_TABLES if name in data]
    if not old:
        return data
    out = dict(data)
    for name in old:
        new = RENAMED_TABLES[name]
        if new in out:
            raise ConfigError(
                f"both [{name}] and [{new}] are given", f"[{name}] is the old name: keep [{new}]"
            )
        warnings.warn(f"[{name}] is now [{new}]; the old name is read until the next release",
                      DeprecationWarning, stacklevel=3)  # fmt: skip
        out[new] = out.pop(name)
    return out


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
        return Path(__file__).resolve().parents[2] / "presets"


def list_presets() -> dict[str, Path]:
    return {p.stem: p for p in sorted(preset_dir().glob("*.toml"))}


def read_text(path: Path, what: str, error: type[ConfigError] = ConfigError) -> str:
    """A text file's UTF-8 contents; a missing, unreadable or non-UTF-8 file (or a folder) is one
    `error` naming `what` and, for bad bytes, the line they are on."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder, not a file", "pass the file's path") from None
    except OSError as err:
        raise error(f"cannot read {what} {path}: {err.strerror or err}", "check the path") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise error(
            f"{what} {path} is not UTF-8 text (line {line}: byte 0x{data[err.start]:02x})",
            "save the file as UTF-8",
        ) from None


def load_toml(path: Path, what: str, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """A TOML file's data; a missing, unreadable, non-UTF-8 or garbled file is one `error` naming `what`."""
    text = read_text(path, what, error)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{what} {path} is not valid TOML: {err}", "fix the syntax") from None


def load_preset_data(name_or_path: str) -> dict[str, Any]:
    """Raw TOML data of a named preset or a preset file path."""
    presets = list_presets()
    if name_or_path in presets:
        return load_toml(presets[name_or_path], "preset")
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        return load_toml(path, "preset")
    raise ConfigError(f"unknown preset '{name_or_path}'", suggest(name_or_path, list(presets), "presets"))


def resolve_config(
    preset: str = "tiny", overrides: list[str] | tuple[str, ...] = (), extra: dict[str, Any] | None = None
) -> RenderConfig:
    """Defaults < preset < `extra` (e.g. a timeline's settings) < `--set` overrides."""
    data = _upgrade(load_preset_data(preset))
    if extra:
        data = _merge(data, _upgrade(extra))
    for text in overrides:
        data = _merge(data, _upgrade(parse_override(text)))
    return _build(RenderConfig, data)


def build_config(data: dict[str, Any]) -> RenderConfig:
    """A RenderConfig from nested plain data (e.g. config_to_dict's output), validated."""
    return _build(RenderConfig, _upgrade(data))


def with_changes(cfg: RenderConfig, section: str, **changes: Any) -> RenderConfig:
    """A copy of `cfg` with fields of one section replaced (validated again)."""
    return replace(cfg, **{section: replace(getattr(cfg, section), **changes)})
