"""The embedded demo model: the real architectures at toy size, with untrained weights generated
deterministically from a fixed seed (no download). It proves the pipeline, not the pictures.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from dysink_cli.model.config import DiTConfig, PECoreConfig, T5Config, VAEConfig

TINY_SEED = 20261122
TINY_DIT = DiTConfig(dim=64, ffn_dim=128, num_heads=4, num_layers=4, text_dim=32)
TINY_VAE = VAEConfig(dim=8)
TINY_T5 = T5Config(vocab_size=384, dim=32, dim_attn=32, dim_ffn=64, num_heads=4, num_layers=2)
TINY_PE = PECoreConfig(image_size=32, patch_size=8, width=32, layers=2, heads=2, output_dim=16)


def init_untrained(module: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter from a seeded generator, in state-dict order (the fixtures' recipe):
    matrices N(0, 1/fan_in), norm scales 1 + 0.1 N, biases 0.05 N, modulation N / sqrt(dim).
    """
    device = next(module.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen, dtype=torch.float32, device=device)
            leaf = name.rsplit(".", 1)[-1]
            if "modulation" in name:
                value = noise / math.sqrt(param.shape[-1])
            elif (
                leaf in ("bias", "in_proj_bias") or param.ndim == 1 and "norm" not in name and leaf != "gamma"
            ):
                value = 0.05 * noise
            elif leaf in ("gamma",) or "norm" in name or "ln_" in name or param.ndim == 1:
                value = 1 + 0.1 * noise
            else:
                fan_in = param[0].numel() if param.ndim > 1 else param.numel()
                value = noise / math.sqrt(fan_in)
            param.copy_(value.to(param.dtype))
    return module
