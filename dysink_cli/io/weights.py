"""Weights folders: which file plays which role (`discover`), and the loaders render and parity use.

Standard release names are found in the folder and one level of subfolders; a preset's `[files]`
manifest overrides them. Every loader builds its module on the meta device, loads strictly
(assign=True) and only then casts. A role that was asked for and is absent is an error.
Imports config (the manifest's type), errors, io.weight_files, io.lora and model/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dysink_cli.config import FilesSection
from dysink_cli.errors import WeightsError
from dysink_cli.io.lora import merge_loras, parse_lora
from dysink_cli.io.weight_files import (
    clean_keys,
    load_strict,
    materialize,
    pe_state_dict,
    read_weight_file,
    unwrap,
)
from dysink_cli.model.config import DiTConfig, PECoreConfig, T5Config, VAEConfig
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.taehv import LIGHTTAEW2_1, TAEHV, TAEW2_1
from dysink_cli.model.tokenizer import HFTokenizer
from dysink_cli.model.vae import WanVAE

WAN_DIT_NAMES = ("diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.safetensors")
VAE_NAMES = ("Wan2.1_VAE.pth",)
T5_NAMES = ("models_t5_umt5-xxl-enc-bf16.pth",)
TOKENIZER_DIR = "google/umt5-xxl"
PE_NAMES = ("PE-Core-*.pt", "open_clip_model.safetensors")
TAEHV_NAMES = ("taew2_1.safetensors", "taew2_1.pth", "lighttaew2_1.safetensors", "lighttaew2_1.pth")
# release name, generator file, LoRA files in merge order
RELEASES = (
    ("DySink", "stage1_base.pt", ("stage2_lora.pt", "stage3*.pt")),
    ("LongLive", "longlive_base.pt", ("lora.pt",)),
    ("Self-Forcing", "self_forcing_dmd.pt", ()),
)
ROLE_NAMES = {
    "vae": "VAE file",
    "t5": "T5 file",
    "tokenizer": "tokenizer folder",
    "pe": "PE-Core file",
    "taehv": "TAEHV decoder file",
}
WEIGHTS_HINT = "pass --weights DIR, set DYSINK_WEIGHTS, or set model.weights in the preset"


@dataclass(frozen=True)
class WeightsPlan:
    """Which file plays which role; None = not found (an error only when that role is loaded)."""

    root: Path
    wan_dit: Path | None = None  # diffusers safetensors or shard index
    generator: Path | None = None  # overrides the Wan DiT entirely
    loras: tuple[Path, ...] = ()
    use_ema: bool = True
    vae: Path | None = None
    t5: Path | None = None
    tokenizer: Path | None = None
    pe: Path | None = None
    taehv: Path | None = None  # TAEHV tiny decoder (taew2_1 or lighttaew2_1), optional
    release: str = ""

    def rel(self, path: Path | None) -> str:
        if path is None:
            return "-"
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def describe(self) -> str:
        """One line for logs: the release and every role's file, relative to the folder."""
        dit = (
            f"generator {self.rel(self.generator)}" + (" (EMA if present)" if self.use_ema else "")
            if self.generator
            else f"Wan DiT {self.rel(self.wan_dit)}"
        )
        dit += "".join(f" + LoRA {self.rel(p)}" for p in self.loras)
        roles = (("VAE", self.vae), ("T5", self.t5), ("tokenizer", self.tokenizer), ("PE-Core", self.pe))
        parts = [dit] + [f"{name} {self.rel(p)}" for name, p in roles]
        return f"{self.release or 'weights'} from {self.root}: " + "; ".join(parts)

    def need(self, role: str, looked_for: tuple[str, ...]) -> Path:
        """The role's path, or a WeightsError naming what was looked for and where."""
        path = getattr(self, role)
        if path is None:
            raise WeightsError(
                f"no {ROLE_NAMES[role]} in {self.root}: looked for {' or '.join(looked_for)} there "
                "and in its subfolders",
                f"add it, or name it under [files] {role} = ...",
            )
        return path


def _search_dirs(root: Path) -> list[Path]:
    return [root] + sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find(root: Path, patterns: tuple[str, ...], what: str, want_dir: bool = False) -> Path | None:
    """The one file (or folder) matching any pattern in root or one subfolder level; >1 is an error."""
    hits = sorted(
        {
            p
            for d in _search_dirs(root)
            for pat in patterns
            for p in d.glob(pat)
            if (p.is_dir() if want_dir else p.is_file())
        }
    )
    if len(hits) > 1:
        names = ", ".join(str(p.relative_to(root)) for p in hits[:4])
        raise WeightsError(
            f"{root} has several {what} files: {names}",
            "keep one, or name it in the preset's [files] section",
        )
    return hits[0] if hits else None


def _find_all(root: Path, pattern: str) -> list[Path]:
    return sorted({p for d in _search_dirs(root) for p in d.glob(pattern) if p.is_file()})


def _manifest_path(root: Path, value: str, key: str, want_dir: bool = False) -> Path:
    path = root / value
    if not (path.is_dir() if want_dir else path.is_file()):
        raise WeightsError(
            f"[files] {key} = {value!r}: {path} does not exist",
            "paths in [files] are relative to the weights folder",
        )
    return path


def _release(root: Path) -> tuple[str, Path | None, tuple[Path, ...]]:
    found = [(name, _find(root, (gen,), f"{name} generator"), loras) for name, gen, loras in RELEASES]
    with_gen = [(name, gen, loras) for name, gen, loras in found if gen is not None]
    if len(with_gen) > 1:
        names = ", ".join(str(gen.relative_to(root)) for _, gen, _ in with_gen)
        raise WeightsError(
            f"{root} holds generators of several releases: {names}",
            "name one under [files] generator = ...",
        )
    for name, gen, patterns in found:
        loras = tuple(p for pat in patterns for p in _find_all(root, pat))
        if loras and gen is None:
            raise WeightsError(
                f"{root} has the {name} LoRA {loras[0].relative_to(root)} but not its base generator",
                "add the base, or list the files under [files]",
            )
        if gen is not None:
            return name, gen, loras
    return "", None, ()


def discover(weights_dir: str | Path, manifest: FilesSection | None = None) -> WeightsPlan:
    """Find every role's file in `weights_dir` (standard names) unless the manifest names it."""
    m = manifest or FilesSection()
    if str(weights_dir) == "":
        raise WeightsError("no weights folder given", WEIGHTS_HINT)
    root = Path(weights_dir).expanduser()
    if not root.is_dir():
        raise WeightsError(f"weights folder {root} does not exist or is not a folder", WEIGHTS_HINT)
    if m.generator:
        release, generator, loras = "manifest", _manifest_path(root, m.generator, "generator"), ()
    else:
        release, generator, loras = _release(root)
    if m.loras:
        loras = tuple(_manifest_path(root, p, "loras") for p in m.loras)

    def role(value: str, key: str, names: tuple[str, ...], want_dir: bool = False) -> Path | None:
        return _manifest_path(root, value, key, want_dir) if value else _find(root, names, key, want_dir)

    return WeightsPlan(
        root=root,
        wan_dit=_find(root, WAN_DIT_NAMES, "Wan DiT"),
        generator=generator,
        loras=loras,
        use_ema=m.use_ema,
        vae=role(m.vae, "vae", VAE_NAMES),
        t5=role(m.t5, "t5", T5_NAMES),
        tokenizer=role(m.tokenizer, "tokenizer", (TOKENIZER_DIR,), want_dir=True),
        pe=role(m.pe, "pe", PE_NAMES),
        taehv=role(m.taehv, "taehv", TAEHV_NAMES),
        release=release,
    )


def _check_wan_config(index_or_file: Path, dit_cfg: DiTConfig) -> None:
    """The Wan folder's config.json, where present, must describe the model being built."""
    config = index_or_file.parent / "config.json"
    if not config.is_file():
        return
    try:
        data = json.loads(config.read_text())
    except ValueError as err:
        raise WeightsError(f"{config} is not valid JSON: {err}", "re-download it") from None
    wrong = [
        f"{k} {data[k]} != {getattr(dit_cfg, k)}"
        for k in sorted(data)
        if hasattr(dit_cfg, k)
        and not k.startswith("_")
        and (tuple(data[k]) if isinstance(data[k], list) else data[k]) != getattr(dit_cfg, k)
    ]
    if wrong:
        raise WeightsError(
            f"{config} describes another model: {'; '.join(wrong[:3])}",
            "use the Wan2.1-T2V-1.3B folder with model.name = wan-1.3b",
        )


def dit_base_state(
    plan: WeightsPlan, dit_cfg: DiTConfig, meta: bool = False
) -> tuple[dict[str, Tensor], Path]:
    """The generator file's weights (EMA preferred when use_ema), else the Wan DiT's; keys cleaned."""
    source = plan.generator or plan.wan_dit
    if source is None:
        raise WeightsError(
            f"no DiT weights in {plan.root}: looked for a Wan2.1-T2V-1.3B folder "
            f"({WAN_DIT_NAMES[1]}) and the generator files "
            f"{', '.join(g for _, g, _ in RELEASES)}",
            "add one, or name it under [files] generator = ...",
        )
    if plan.generator is None:
        _check_wan_config(source, dit_cfg)
    state = unwrap(read_weight_file(source, meta), source, plan.use_ema)
    return clean_keys(state, source, strip_model=True), source


def dit_state(
    plan: WeightsPlan,
    dit_cfg: DiTConfig,
    meta: bool = False,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> tuple[dict[str, Tensor], Path]:
    """`dit_base_state` with the plan's LoRAs merged in order in fp32; merged weights then in `dtype`."""
    state, source = dit_base_state(plan, dit_cfg, meta)
    adapters = [parse_lora(read_weight_file(p, meta), p) for p in plan.loras]
    return merge_loras(state, adapters, dtype, device), source


def _build(module_cls: type[nn.Module], cfg: Any) -> nn.Module:
    with torch.device("meta"):
        return module_cls(cfg)


def load_generator(
    plan: WeightsPlan, dit_cfg: DiTConfig, dtype: torch.dtype, device: torch.device | str
) -> WanDiT:
    """The DiT: generator file (or Wan DiT), LoRAs merged in fp32, then cast to `dtype` on `device`."""
    state, source = dit_state(plan, dit_cfg, dtype=dtype, device=device)
    return materialize(load_strict(_build(WanDiT, dit_cfg), state, source), dtype, device)


def vae_state(plan: WeightsPlan, meta: bool = False) -> dict[str, Tensor]:
    path = plan.need("vae", VAE_NAMES)
    return clean_keys(unwrap(read_weight_file(path, meta), path), path, strip_model=False)


def load_vae(plan: WeightsPlan, vae_cfg: VAEConfig, dtype: torch.dtype, device: torch.device | str) -> WanVAE:
    return materialize(load_strict(_build(WanVAE, vae_cfg), vae_state(plan), plan.vae), dtype, device)


def t5_state(plan: WeightsPlan, meta: bool = False) -> dict[str, Tensor]:
    path = plan.need("t5", T5_NAMES)
    return clean_keys(unwrap(read_weight_file(path, meta), path), path, strip_model=False)


def load_t5(
    plan: WeightsPlan, t5_cfg: T5Config, dtype: torch.dtype, device: torch.device | str
) -> UMT5Encoder:
    """The umT5 encoder alone (its file is bf16; upcast when `dtype` is wider)."""
    return materialize(load_strict(_build(UMT5Encoder, t5_cfg), t5_state(plan), plan.t5), dtype, device)


def load_tokenizer(plan: WeightsPlan, text_len: int) -> HFTokenizer:
    return HFTokenizer.from_folder(plan.need("tokenizer", (TOKENIZER_DIR,)), text_len)


def load_text_encoder(
    plan: WeightsPlan, t5_cfg: T5Config, dtype: torch.dtype, device: torch.device | str
) -> tuple[UMT5Encoder, HFTokenizer]:
    """(encoder, tokenizer); the tokenizer pads to `t5_cfg.text_len` with EOS."""
    tokenizer = load_tokenizer(plan, t5_cfg.text_len)
    return load_t5(plan, t5_cfg, dtype, device), tokenizer


def pe_state(plan: WeightsPlan, meta: bool = False) -> dict[str, Tensor]:
    path = plan.need("pe", PE_NAMES)
    return pe_state_dict(read_weight_file(path, meta), path)


def load_pe(plan: WeightsPlan, pe_cfg: PECoreConfig, device: torch.device | str) -> PECoreVision:
    """PE-Core vision tower, always float32 (the reference's descriptor precision)."""
    return materialize(
        load_strict(_build(PECoreVision, pe_cfg), pe_state(plan), plan.pe), torch.float32, device
    )


def taehv_state(plan: WeightsPlan, meta: bool = False) -> dict[str, Tensor]:
    path = plan.need("taehv", TAEHV_NAMES)
    return clean_keys(read_weight_file(path, meta), path, strip_model=False)


def load_taehv(plan: WeightsPlan, dtype: torch.dtype, device: torch.device | str) -> TAEHV:
    """The TAEHV decoder named by its release file: `lighttaew2_1.*` wants un-normalised latents
    (it gets them: its config says so), `taew2_1.*` the DiT's latents as they are."""
    path = plan.need("taehv", TAEHV_NAMES)
    cfg = LIGHTTAEW2_1 if path.name.startswith("light") else TAEW2_1
    model = _build(TAEHV, cfg)
    state = model.fit_state_dict(taehv_state(plan))
    return materialize(load_strict(model, state, path), dtype, device)
