"""Render configuration: frozen dataclasses loaded from TOML presets, with `--set` overrides.

`sections` holds the tables and every check of a value (run before any model loads); `loader` reads
presets, timelines' settings and `--set`, in one precedence. Torch-free: the CLI imports it at start.
"""

from dysink_cli.config.loader import (
    REMOVED_KEYS,
    RENAMED_TABLES,
    build_config,
    config_to_dict,
    list_presets,
    load_preset_data,
    load_toml,
    parse_override,
    preset_dir,
    read_text,
    resolve_config,
    suggest,
    with_changes,
)
from dysink_cli.config.sections import (
    ATTENTION,
    BANK_FORMATS,
    DTYPES,
    GATE_RULES,
    MODEL_NAMES,
    POLICIES,
    BankSection,
    DySinkSection,
    EngineSection,
    FilesSection,
    ModelSection,
    OutputSection,
    RenderConfig,
    RopeSection,
    SamplerSection,
)

__all__ = [
    "ATTENTION",
    "BANK_FORMATS",
    "DTYPES",
    "GATE_RULES",
    "MODEL_NAMES",
    "POLICIES",
    "REMOVED_KEYS",
    "RENAMED_TABLES",
    "BankSection",
    "DySinkSection",
    "EngineSection",
    "FilesSection",
    "ModelSection",
    "OutputSection",
    "RenderConfig",
    "RopeSection",
    "SamplerSection",
    "build_config",
    "config_to_dict",
    "list_presets",
    "load_preset_data",
    "load_toml",
    "parse_override",
    "preset_dir",
    "read_text",
    "resolve_config",
    "suggest",
    "with_changes",
]
