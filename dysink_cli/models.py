"""The networks of one render: the text encoder runs first and leaves the device, then the DiT,
VAE and PE-Core are loaded once. Tiny demo weights or checkpoints from a weights folder.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dysink_cli.config import RenderConfig
from dysink_cli.errors import ConfigError
from dysink_cli.io.checkpoints import materialize
from dysink_cli.model.config import PE_CORE_CONFIGS, UMT5_XXL, WAN_1_3B, WAN_VAE
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.tiny import TINY_DIT, TINY_PE, TINY_SEED, TINY_T5, TINY_VAE, init_untrained
from dysink_cli.model.tokenizer import ByteTokenizer
from dysink_cli.model.vae import WanVAE

MODEL_NAMES = ("tiny", "wan-1.3b")


@dataclass
class Models:
    """Loaded, frozen networks. `pe` is None when the policy needs no descriptors."""

    dit: WanDiT
    vae: WanVAE
    pe: PECoreVision | None
    description: str


def _tiny(module: nn.Module, offset: int, dtype: torch.dtype, device: torch.device) -> nn.Module:
    return materialize(init_untrained(module, TINY_SEED + offset), dtype=dtype, device=device)


def _check_name(cfg: RenderConfig) -> None:
    if cfg.model.name not in MODEL_NAMES:
        raise ConfigError(
            f"model.name = {cfg.model.name!r} is not one of {', '.join(MODEL_NAMES)}", "fix the preset"
        )


@torch.no_grad()
def encode_prompts(
    cfg: RenderConfig, weights_dir: str, prompts: list[str], device: torch.device, dtype: torch.dtype
) -> dict[str, Tensor]:
    """umT5 embeddings (512 rows, zero after the prompt) of each distinct prompt, on the CPU.

    The encoder (11 GB at full size) is loaded, run once per distinct prompt, and freed.
    """
    _check_name(cfg)
    if cfg.model.name == "tiny":
        encoder = _tiny(UMT5Encoder(TINY_T5), 2, dtype, device)
        tokenizer = ByteTokenizer(TINY_T5.vocab_size, TINY_T5.text_len)
    else:
        from dysink_cli.io import weights

        plan = weights.discover(weights_dir, cfg.checkpoints)
        encoder, tokenizer = weights.load_text_encoder(plan, UMT5_XXL, dtype, device)
    unique = list(dict.fromkeys(prompts))
    out = {}
    for prompt in unique:
        ids, mask = tokenizer([prompt])
        out[prompt] = encoder.encode(ids.to(device), mask.to(device)).float().cpu()
    del encoder
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out


def load_models(cfg: RenderConfig, weights_dir: str, device: torch.device, dtype: torch.dtype) -> Models:
    """DiT and VAE in `dtype`, PE-Core in float32 (the reference's descriptor precision)."""
    _check_name(cfg)
    need_pe = cfg.engine.policy == "dysink"
    if cfg.model.name == "tiny":
        return Models(
            dit=_tiny(WanDiT(TINY_DIT), 0, dtype, device),
            vae=_tiny(WanVAE(TINY_VAE), 1, dtype, device),
            pe=_tiny(PECoreVision(TINY_PE), 3, torch.float32, device) if need_pe else None,
            description="built-in demo model (tiny, untrained weights)",
        )
    from dysink_cli.io import weights

    plan = weights.discover(weights_dir, cfg.checkpoints)
    pe_cfg = PE_CORE_CONFIGS.get(cfg.model.pe_core)
    if pe_cfg is None:
        raise ConfigError(
            f"model.pe_core = {cfg.model.pe_core!r} is unknown", f"use one of {', '.join(PE_CORE_CONFIGS)}"
        )
    return Models(
        dit=weights.load_generator(plan, WAN_1_3B, dtype, device),
        vae=weights.load_vae(plan, WAN_VAE, dtype, device),
        pe=weights.load_pe(plan, pe_cfg, device) if need_pe else None,
        description=plan.describe(),
    )
