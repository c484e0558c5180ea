"""Build a fixture's models from its config and load their weights strictly.

The weights come from the fixture's own files, or from `fx.weights_override` (modules loaded
by the same checkpoint loader `dysink render --weights` uses).
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file
from torch import nn

from dysink_cli.io.weight_files import load_strict, materialize
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.vae import WanVAE
from dysink_cli.parity.fixture import Fixture


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
