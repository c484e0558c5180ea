"""A parity fixture directory: config, io tensors, log, and the models its config describes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from dysink_cli.errors import ConfigError
from dysink_cli.model.config import DiTConfig, PECoreConfig, T5Config, VAEConfig


def _fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}


@dataclass
class Fixture:
    """Everything read from one fixture directory."""

    path: Path
    config: dict[str, Any]
    io: dict[str, torch.Tensor]
    log: dict[str, Any] | None
    weights_override: dict[str, nn.Module] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Fixture:
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise ConfigError(f"{path} has no config.json", "point at a fixture directory")
        config = json.loads(cfg_path.read_text())
        io_path = path / "io.safetensors"
        io = load_file(io_path) if io_path.is_file() else {}
        log_path = path / "log.json"
        log = json.loads(log_path.read_text()) if log_path.is_file() else None
        return cls(path, config, io, log)

    @property
    def name(self) -> str:
        return self.path.name

    def kind(self) -> str:
        """Which procedure the config names: by pipeline class, then model class, then section."""
        c = self.config
        if "rolling_sink" in c:
            return "rolling_sink"
        if c.get("fixture") == "taehv":
            return "taehv"
        pipeline = str(c.get("pipeline", {}).get("class", ""))
        if "Interactive" in pipeline:
            return "interactive"
        if "Memory" in pipeline:
            return "dysink"
        if "CausalInferencePipeline" in pipeline:
            return "causal"
        model = str(c.get("model", {}).get("class", ""))
        for needle, kind in (("WanVAE", "vae"), ("T5", "t5"), ("WanModel", "dit_forward")):
            if needle in model:
                return kind
        raise ConfigError(
            f"{self.path}: cannot tell the fixture's procedure from config.json",
            "expected a pipeline.class or model.class naming a reference component",
        )

    def dit_config(self) -> DiTConfig:
        model = self.config["model"]
        extra = self.config.get("model_extra", {})
        theta = {"rope_theta": float(extra["rope_theta"])} if "rope_theta" in extra else {}
        return DiTConfig(**_fields(DiTConfig, model.get("constructor", model)), **theta)

    def vae_config(self, section: dict[str, Any]) -> VAEConfig:
        cfg = _fields(VAEConfig, section["constructor"])
        top = section if "latent_mean" in section else self.config
        return VAEConfig(**cfg, latent_mean=tuple(top["latent_mean"]), latent_std=tuple(top["latent_std"]))

    def pe_config(self) -> PECoreConfig:
        return PECoreConfig(**_fields(PECoreConfig, self.config["memory_encoder"]["constructor"]))

    def t5_config(self) -> T5Config:
        c = self.config["model"]["constructor"]
        return T5Config(
            **_fields(T5Config, {**c, "num_layers": c.get("encoder_layers", c.get("num_layers"))})
        )

    def expected(self, name: str) -> torch.Tensor | None:
        return self.io.get(name)

    def tolerance(self, name: str) -> tuple[float, float]:
        """(atol, rtol) for an output; patterns like 'decoded_*' / 'switch*' match by prefix."""
        tol = self.config.get("tolerance", {})
        if "atol" in tol and not isinstance(tol["atol"], dict):
            return float(tol["atol"]), 0.0
        if name in tol:
            return float(tol[name]["atol"]), float(tol[name]["rtol"])
        for pattern, value in tol.items():
            if pattern.endswith("*") and name.startswith(pattern[:-1]):
                return float(value["atol"]), float(value["rtol"])
        return 1e-3, 1e-3
