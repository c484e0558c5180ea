"""The networks of one render: the text encoder runs first and leaves the device, then the DiT,
VAE and PE-Core are loaded once. The embedded demo's weights, or files from a weights folder
found once (one WeightsPlan). Imports config, errors, io and model.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dysink_cli.config import RenderConfig
from dysink_cli.errors import ConfigError
from dysink_cli.io import weights
from dysink_cli.io.weight_files import materialize
from dysink_cli.model.config import PE_CORE_CONFIGS, UMT5_XXL, WAN_1_3B, WAN_VAE
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.taehv import TAEHV
from dysink_cli.model.tiny import TINY_DIT, TINY_PE, TINY_SEED, TINY_T5, TINY_VAE, init_untrained
from dysink_cli.model.tokenizer import ByteTokenizer
from dysink_cli.model.vae import WanVAE


@dataclass
class Networks:
    """Loaded, frozen networks. `pe` is None when the policy needs no descriptors."""

    dit: WanDiT
    vae: WanVAE
    pe: PECoreVision | None
    description: str
    taehv: TAEHV | None = None  # the TAEHV tiny decoder, when the render asks for it


def _tiny(module: nn.Module, offset: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    return materialize(init_untrained(module, TINY_SEED + offset), dtype=dtype, device=device)


class NetworkSource:
    """Where a render's networks come from: the embedded toy world (trained, shipped in the
    package), the untrained tiny demo, or one weights folder (found once)."""

    def __init__(self, cfg: RenderConfig) -> None:
        self.cfg = cfg
        real = cfg.model.name not in ("tiny", "toy")
        self.plan = weights.discover(cfg.model.weights, cfg.files) if real else None
        self._toy: tuple | None = None

    def _toy_networks(self, device: torch.device, dtype: torch.dtype) -> tuple:
        if self._toy is None:
            from dysink_cli.toy.models import load_toy_networks

            self._toy = load_toy_networks(device, dtype)
        return self._toy

    @torch.no_grad()
    def encode_prompts(
        self, prompts: list[str], device: torch.device, dtype: torch.dtype
    ) -> dict[str, Tensor]:
        """umT5 embeddings (512 rows, zero after the prompt) of each distinct prompt, on the CPU.

        The encoder (11 GB at full size) is loaded, run once per distinct prompt, and freed.
        """
        if self.cfg.model.name == "toy":
            _, _, encoder, tokenizer, _ = self._toy_networks(device, dtype)
        elif self.plan is None:
            encoder = _tiny(UMT5Encoder(TINY_T5), 2, dtype, device)
            tokenizer = ByteTokenizer(TINY_T5.vocab_size, TINY_T5.text_len)
        else:
            encoder, tokenizer = weights.load_text_encoder(self.plan, UMT5_XXL, dtype, device)
        out = {}
        for prompt in dict.fromkeys(prompts):
            ids, mask = tokenizer([prompt])
            out[prompt] = encoder.encode(ids.to(device), mask.to(device)).float().cpu()
        del encoder
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return out

    def load(self, device: torch.device, dtype: torch.dtype) -> Networks:
        """DiT and VAE in `dtype`, PE-Core in float32 (the reference's descriptor precision)."""
        need_pe = self.cfg.engine.policy == "dysink"
        if self.cfg.model.name == "toy":
            dit, vae, _, _, pe = self._toy_networks(device, dtype)
            self._toy = None  # the text encoder goes with it
            return Networks(dit, vae, pe if need_pe else None, "built-in toy world (trained, 128x96)")
        if self.plan is None:
            return Networks(
                dit=_tiny(WanDiT(TINY_DIT), 0, dtype, device),
                vae=_tiny(WanVAE(TINY_VAE), 1, dtype, device),
                pe=_tiny(PECoreVision(TINY_PE), 3, torch.float32, device) if need_pe else None,
                description="built-in demo model (tiny, untrained weights)",
            )
        pe_cfg = PE_CORE_CONFIGS.get(self.cfg.model.pe_core)
        if pe_cfg is None:
            raise ConfigError(
                f"model.pe_core = {self.cfg.model.pe_core!r} is unknown",
                f"use one of {', '.join(PE_CORE_CONFIGS)}",
            )
        need_taehv = "taehv" in (self.cfg.model.decoder, self.cfg.dysink.descriptor_decoder)
        return Networks(
            dit=weights.load_generator(self.plan, WAN_1_3B, dtype, device),
            vae=weights.load_vae(self.plan, WAN_VAE, dtype, device),
            pe=weights.load_pe(self.plan, pe_cfg, device) if need_pe else None,
            description=self.plan.describe(),
            taehv=weights.load_taehv(self.plan, dtype, device) if need_taehv else None,
        )
