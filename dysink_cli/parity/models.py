"""Build a fixture's models from its config and load their weights strictly.

The weights come from the fixture's own files, or from `fx.weights_override`: modules that
`fixture_overrides` loads from a weights folder by the same loaders `dysink render --weights` uses.
Imports io (weight files, weights folders), model/ and parity.fixture.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from dysink_cli.io import weights
from dysink_cli.io.weight_files import load_strict, materialize
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.vae import WanVAE
from dysink_cli.parity.fixture import Fixture

DIT_KINDS = ("dit_forward", "causal", "dysink", "interactive", "rolling_sink")  # procedures with a DiT


def _load(fx: Fixture, role: str, module: nn.Module, filename: str) -> nn.Module:
    override = fx.weights_override.get(role)
    if override is not None:
        return override
    path = fx.path / filename
    return materialize(load_strict(module, load_file(path), path), dtype=torch.float32)


def load_dit(fx: Fixture) -> WanDiT:
    return _load(fx, "dit", WanDiT(fx.dit_config()), "weights.safetensors")


def load_vae(fx: Fixture, section: dict, filename: str) -> WanVAE:
    return _load(fx, "vae", WanVAE(fx.vae_config(section)), filename)


def load_pe(fx: Fixture) -> PECoreVision:
    return _load(fx, "pe", PECoreVision(fx.pe_config()), "pe_weights.safetensors")


def load_t5(fx: Fixture) -> UMT5Encoder:
    return _load(fx, "t5", UMT5Encoder(fx.t5_config()), "weights.safetensors")


def fixture_overrides(fx: Fixture, weights_dir: str | Path) -> dict[str, nn.Module]:
    """Fixture roles ("dit", "vae", "pe", "t5") found in `weights_dir`, loaded in float32 on the CPU."""
    plan = weights.discover(weights_dir)
    kind, cfg, f32 = fx.kind(), fx.config, torch.float32
    out: dict[str, nn.Module] = {}
    if kind in DIT_KINDS and (plan.generator or plan.wan_dit):
        out["dit"] = weights.load_generator(plan, fx.dit_config(), f32, "cpu")
    vae_section = cfg.get("vae") if "vae" in cfg else (cfg["model"] if kind == "vae" else None)
    if plan.vae and vae_section is not None:
        out["vae"] = weights.load_vae(plan, fx.vae_config(vae_section), f32, "cpu")
    if plan.pe and "memory_encoder" in cfg:
        out["pe"] = weights.load_pe(plan, fx.pe_config(), "cpu")
    if plan.t5 and kind == "t5":
        out["t5"] = weights.load_t5(plan, fx.t5_config(), f32, "cpu")
    return out
