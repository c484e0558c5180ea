"""The networks a benchmark runs: random weights at full size (built on the device, no files), or
what the render itself would load (the embedded demo, or a weights folder through NetworkSource).

`NetworkCache` keeps one set at a time and reuses it across configurations that need the same.
Imports config, model and render (torch at import: the CLI imports benchmarks inside commands).
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from dysink_cli.config import RenderConfig
from dysink_cli.model.config import PE_CORE_CONFIGS, WAN_1_3B, WAN_VAE
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.taehv import TAEHV, TAEW2_1
from dysink_cli.model.tiny import init_untrained
from dysink_cli.model.vae import WanVAE
from dysink_cli.render.networks import Networks, NetworkSource

PROMPT = "benchmark"
FULL_SIZE = "wan-1.3b"


def random_networks(
    device: torch.device, dtype: torch.dtype, pe_core: str = "PE-Core-S16-384", taehv: bool = False
) -> Networks:
    """Wan2.1-1.3B DiT, Wan VAE, PE-Core (fp32) and optionally TAEHV, random weights, built on `device`."""
    with torch.device(device):
        dit = init_untrained(WanDiT(WAN_1_3B), 1).to(dtype).eval().requires_grad_(False)
        vae = init_untrained(WanVAE(WAN_VAE), 2).to(dtype).eval().requires_grad_(False)
        pe = init_untrained(PECoreVision(PE_CORE_CONFIGS[pe_core]), 3).float().eval().requires_grad_(False)
        tae = init_untrained(TAEHV(TAEW2_1), 4).to(dtype).eval().requires_grad_(False) if taehv else None
    return Networks(dit=dit, vae=vae, pe=pe, description="random full-size weights", taehv=tae)


def random_embeds(prompt: str = PROMPT) -> dict[str, Tensor]:
    """A umT5-shaped embedding (512 x 4096, on the CPU), zero after the prompt's first 40 rows."""
    gen = torch.Generator().manual_seed(5)
    emb = torch.randn(1, WAN_1_3B.text_len, WAN_1_3B.text_dim, generator=gen) * 0.2
    emb[:, 40:] = 0  # (1, 512, 4096): T5 output is zero after the prompt
    return {prompt: emb}


def needs_taehv(cfg: RenderConfig) -> bool:
    return "taehv" in (cfg.model.decoder, cfg.dysink.descriptor_decoder)


@dataclass
class Loaded:
    """One set of networks, the prompt's embeddings, what they are and how long they took."""

    networks: Networks
    embeds: dict[str, Tensor]
    load_s: float


class NetworkCache:
    """Per configuration: random full-size networks (built with what every configuration needs:
    PE-Core, and TAEHV when any asks for it), or what NetworkSource loads (the demo, the toy, a
    weights folder). One set is held at a time; configurations that fit it reuse it."""

    def __init__(self, device: torch.device, random: bool = True, any_taehv: bool = False) -> None:
        self.device, self.random, self.any_taehv = device, random, any_taehv
        self.key: tuple | None = None
        self.loaded: Loaded | None = None

    def dtype(self, cfg: RenderConfig) -> torch.dtype:
        """The render's compute dtype: the config's on CUDA, float32 on the CPU."""
        return getattr(torch, cfg.model.dtype) if self.device.type == "cuda" else torch.float32

    def _key(self, cfg: RenderConfig) -> tuple:
        m = cfg.model
        if self.random and m.name == FULL_SIZE:
            return ("random", m.pe_core, m.dtype)
        return (m.name, m.weights, m.pe_core, m.dtype, cfg.engine.policy == "dysink", needs_taehv(cfg))

    def get(self, cfg: RenderConfig) -> Loaded:
        """The networks for `cfg`, loading them when the held set does not fit."""
        key = self._key(cfg)
        if self.loaded is not None and key == self.key:
            return self.loaded
        self.loaded = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        start, dtype = time.perf_counter(), self.dtype(cfg)
        if key[0] == "random":
            nets = random_networks(self.device, dtype, cfg.model.pe_core, self.any_taehv)
            embeds = random_embeds()
        else:
            source = NetworkSource(cfg)
            embeds = source.encode_prompts([PROMPT], self.device, dtype)
            nets = source.load(self.device, dtype)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.key, self.loaded = key, Loaded(nets, embeds, time.perf_counter() - start)
        return self.loaded
