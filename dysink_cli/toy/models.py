"""The toy model: the real architectures at toy size, trained on the procedural world (toy/train.py).

`load_toy_networks(device, dtype)` reads the shipped fp16 file (one safetensors with `dit.`, `vae.`,
`t5.`, `pe.` keys) strictly; `new_toy_networks()` builds them freshly initialised for training.
The DiT's spatial patch is read from the file: TOY_DIT's 2 x 2 latent pixels (16-px tokens) or the
1 x 1 of profile "toy-fine" (8-px tokens).
TOY_VAE's latent_mean/latent_std are the trained VAE's measured per-channel statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from dysink_cli.errors import WeightsError
from dysink_cli.model.config import DiTConfig, PECoreConfig, T5Config, VAEConfig
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.tiny import init_untrained
from dysink_cli.model.tokenizer import ByteTokenizer
from dysink_cli.model.vae import WanVAE

WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "toy.safetensors"
TOY_SEED = 20261203
TEXT_LEN = 128  # ByteTokenizer: one token per UTF-8 byte, so the longest caption fits

TOY_T5 = T5Config(
    vocab_size=384, dim=64, dim_attn=64, dim_ffn=128, num_heads=4, num_layers=2, text_len=TEXT_LEN
)
TOY_DIT = DiTConfig(
    dim=192, ffn_dim=640, freq_dim=128, num_heads=4, num_layers=8, text_dim=TOY_T5.dim, text_len=TEXT_LEN
)
# Measured on the trained encoder's posterior means over world clips (train_vae.latent_stats).
TOY_LATENT_MEAN = (
    -0.7549, -3.37, -0.5332, 0.6584, 0.7296, 1.3479, -0.1622, -0.375,
    0.2112, -0.6255, -1.7271, -0.662, 2.3045, 3.0915, -1.2511, -1.1241,
)  # fmt: skip
TOY_LATENT_STD = (
    2.8973, 1.5713, 2.1785, 3.0579, 0.9632, 3.5922, 4.3798, 2.2531,
    3.3931, 2.1741, 1.6637, 3.1356, 4.3907, 1.878, 3.6115, 1.1864,
)  # fmt: skip
TOY_VAE = VAEConfig(
    dim=16, z_dim=16, num_res_blocks=1, latent_mean=TOY_LATENT_MEAN, latent_std=TOY_LATENT_STD
)
TOY_PE = PECoreConfig(
    image_size=64, patch_size=8, width=64, layers=3, heads=4, output_dim=64, attn_pooler_heads=4
)
PREFIXES = ("dit", "vae", "t5", "pe")


@dataclass(frozen=True)
class ToyConfigs:
    """The four networks' configs (micro sizes in tests, TOY_* for the shipped model)."""

    dit: DiTConfig = TOY_DIT
    vae: VAEConfig = TOY_VAE
    t5: T5Config = TOY_T5
    pe: PECoreConfig = TOY_PE


TOY = ToyConfigs()


@dataclass
class ToyNetworks:
    dit: WanDiT
    vae: WanVAE
    t5: UMT5Encoder
    pe: PECoreVision

    def modules(self) -> dict[str, nn.Module]:
        return {"dit": self.dit, "vae": self.vae, "t5": self.t5, "pe": self.pe}


def new_toy_networks(cfgs: ToyConfigs = TOY, seed: int = TOY_SEED) -> ToyNetworks:
    """Freshly initialised networks (float32, CPU): model/tiny.py's seeded recipe, then the DiT's
    output head and every block's output gates at zero, so the untrained DiT predicts flow 0."""
    nets = ToyNetworks(WanDiT(cfgs.dit), WanVAE(cfgs.vae), UMT5Encoder(cfgs.t5), PECoreVision(cfgs.pe))
    for offset, module in enumerate(nets.modules().values()):
        init_untrained(module, seed + offset)
    with torch.no_grad():
        nets.dit.head.head.weight.zero_()
        nets.dit.head.head.bias.zero_()
        for name, p in nets.vae.named_parameters():
            if "gamma" in name:
                p.fill_(1.0)  # RMS_norm scales start at 1, as in Wan
    return nets


def with_latent_stats(cfg: VAEConfig, mean: list[float], std: list[float]) -> VAEConfig:
    return replace(cfg, latent_mean=tuple(float(m) for m in mean), latent_std=tuple(float(s) for s in std))


def toy_state_dict(nets: ToyNetworks, dtype: torch.dtype = torch.float16) -> dict[str, Tensor]:
    """All four networks' weights under their prefixes, in `dtype`, contiguous (the shipped layout)."""
    return {
        f"{prefix}.{key}": t.detach().to("cpu", dtype).contiguous()
        for prefix, module in nets.modules().items()
        for key, t in module.state_dict().items()
    }


def with_file_patch(configs: ToyConfigs, tensors: dict[str, Tensor]) -> ToyConfigs:
    """`configs` with the DiT patch that the file's patch embedding (dim, C, pt, ph, pw) was trained with."""
    weight = tensors.get("dit.patch_embedding.weight")
    if weight is None or weight.dim() != 5 or tuple(weight.shape[2:]) == configs.dit.patch_size:
        return configs
    patch = (int(weight.shape[2]), int(weight.shape[3]), int(weight.shape[4]))
    return replace(configs, dit=replace(configs.dit, patch_size=patch))


def load_strict(module: nn.Module, tensors: dict[str, Tensor], prefix: str, path: Path) -> None:
    """load_state_dict(strict=True, assign=True) of `prefix.*` keys; WeightsError on any mismatch."""
    own = {k[len(prefix) + 1 :]: t for k, t in tensors.items() if k.startswith(prefix + ".")}
    want = set(module.state_dict())
    missing, unexpected = sorted(want - set(own)), sorted(set(own) - want)
    if missing or unexpected:
        raise WeightsError(
            f"{path} does not fit the toy {prefix}: missing {missing[:3]}, unexpected {unexpected[:3]}",
            "re-export it with `python -m dysink_cli.toy.train --export`",
        )
    dtype = next(module.parameters()).dtype
    module.load_state_dict({k: t.to(dtype) for k, t in own.items()}, strict=True, assign=True)


def load_toy_networks(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    path: Path = WEIGHTS_PATH,
    configs: ToyConfigs = TOY,
) -> tuple[WanDiT, WanVAE, UMT5Encoder, ByteTokenizer, PECoreVision]:
    """The shipped toy model, frozen, in eval mode: DiT, VAE and T5 in `dtype`, PE-Core in float32."""
    if not path.is_file():
        raise WeightsError(
            f"toy weights not found at {path}",
            "train and export them: python -m dysink_cli.toy.train --out DIR, then --export",
        )
    tensors = load_file(str(path))
    configs = with_file_patch(configs, tensors)
    with torch.device("meta"):
        nets = ToyNetworks(
            WanDiT(configs.dit), WanVAE(configs.vae), UMT5Encoder(configs.t5), PECoreVision(configs.pe)
        )
    for prefix, module in nets.modules().items():
        module_dtype = torch.float32 if prefix == "pe" else dtype
        module.to_empty(device="cpu").to(module_dtype)
        load_strict(module, tensors, prefix, path)
        module.to(device).eval().requires_grad_(False)
    return nets.dit, nets.vae, nets.t5, ByteTokenizer(configs.t5.vocab_size, configs.t5.text_len), nets.pe
