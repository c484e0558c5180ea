"""What a weights folder holds, and whether render can use it, from the files' headers only.

`describe_weights_dir` names the recognised files by pattern (no reading); `check_plan` reads every
role on the meta device (safetensors headers; .pt files mmap'd, weights-only), maps it by the same
code the loaders use and compares it key by key with the model built on meta from `ModelConfigs`
(the full-size ones by default; tests pass tiny ones). Imports io, model/ and errors; the CLI
imports it only inside `dysink weights check` and `dysink doctor`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dysink_cli.errors import ConfigError, DysinkError, WeightsError
from dysink_cli.io import weights
from dysink_cli.io.lora import merge_loras, parse_lora
from dysink_cli.io.weight_files import compare_keys, read_weight_file
from dysink_cli.model.config import (
    PE_CORE_CONFIGS,
    PE_CORE_S16_384,
    UMT5_XXL,
    WAN_1_3B,
    WAN_VAE,
    DiTConfig,
    PECoreConfig,
    T5Config,
    VAEConfig,
)
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.taehv import TAEHV, TAEW2_1
from dysink_cli.model.vae import WanVAE

# (pattern on the file name, what it is); the first match wins, so specific patterns come first.
FILE_KINDS: tuple[tuple[str, str], ...] = (
    ("diffusion_pytorch_model*.safetensors", "Wan2.1 DiT weights"),
    ("config.json", "Wan2.1 DiT config"),
    ("Wan2.1_VAE.pth", "Wan2.1 VAE"),
    ("models_t5_umt5-xxl-enc-bf16.pth", "umT5-XXL text encoder"),
    ("PE-Core-*.pt", "PE-Core vision tower (memory descriptors)"),
    ("taew2_1.*", "TAEHV tiny decoder (taew2_1)"),
    ("lighttaew2_1.*", "TAEHV tiny decoder (lighttaew2_1, un-normalised latents)"),
    ("*lora*.pt", "LoRA"),
    ("*.pt", "generator weights"),
)
MAX_DEPTH = 4
STATUSES = ("ok", "missing", "wrong", "skipped")

StateFn = Callable[..., dict[str, Tensor]]


def describe_weights_dir(path: Path) -> list[tuple[str, str]]:
    """(path relative to `path`, kind) for every recognised file, sorted; the tokenizer folder as one row."""
    root = Path(path)
    if not root.is_dir():
        raise WeightsError(
            f"weights folder {root} does not exist", "pass --weights DIR (README: Real weights)"
        )
    rows: list[tuple[str, str]] = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        for child in sorted(folder.iterdir()):
            rel = child.relative_to(root).as_posix()
            if child.is_dir():
                if rel.endswith(weights.TOKENIZER_DIR):
                    rows.append((rel + "/", "umT5 tokenizer"))
                elif depth + 1 < MAX_DEPTH:
                    stack.append((child, depth + 1))
            elif (kind := _kind(child.name)) is not None:
                rows.append((rel, kind))
    return sorted(rows)


def _kind(name: str) -> str | None:
    return next((kind for pattern, kind in FILE_KINDS if fnmatch.fnmatch(name, pattern)), None)


@dataclass(frozen=True)
class ModelConfigs:
    """The models each role is checked against (the full-size release models by default)."""

    dit: DiTConfig = WAN_1_3B
    vae: VAEConfig = WAN_VAE
    t5: T5Config = UMT5_XXL
    pe: PECoreConfig = PE_CORE_S16_384

    @classmethod
    def full_size(cls, pe_core: str = "PE-Core-S16-384") -> ModelConfigs:
        if pe_core not in PE_CORE_CONFIGS:
            raise ConfigError(f"--pe-core {pe_core!r} is not one of {', '.join(PE_CORE_CONFIGS)}",
                              "pick one of them")  # fmt: skip
        return cls(pe=PE_CORE_CONFIGS[pe_core])


@dataclass
class RoleCheck:
    """One table row: a role, its file, dtype, parameter count and what is wrong (if anything)."""

    role: str
    file: str = "-"
    dtype: str = "-"
    params: int = 0
    status: str = "ok"  # one of STATUSES
    detail: str = ""

    @property
    def problem(self) -> bool:
        return self.status in ("missing", "wrong")


def _dtypes(state: dict[str, Tensor]) -> str:
    return "+".join(sorted({str(v.dtype).removeprefix("torch.") for v in state.values()}))


def _fit(row: RoleCheck, module_cls: type[nn.Module], cfg: object, state: dict[str, Tensor]) -> RoleCheck:
    """Fill dtype/params and compare the keys with the module built on meta."""
    with torch.device("meta"):
        module = module_cls(cfg)
    report = compare_keys(module, state)
    row.params = sum(v.numel() for v in state.values())
    if not report.ok:
        row.status, row.detail = "wrong", report.summary()
    return row


def _guard(row: RoleCheck, present: bool, fn: Callable[[RoleCheck], RoleCheck]) -> RoleCheck:
    """Run one role's check; a DysinkError becomes the row's status and detail."""
    try:
        return fn(row)
    except DysinkError as err:
        row.status, row.detail = ("wrong" if present else "missing"), err.message
        return row


def _lora_row(row: RoleCheck, state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    """Fill one LoRA's row and return the state with it merged (unchanged when it does not fit)."""
    try:
        adapter = parse_lora(read_weight_file(path, meta=True), path)
        merged = merge_loras(state, [adapter])
    except DysinkError as err:
        row.status, row.detail = "wrong", err.message
        return state
    pairs = list(adapter.pairs.values())
    row.dtype = _dtypes({str(i): t for i, pair in enumerate(pairs) for t in pair})
    row.params = sum(a.numel() + b.numel() for a, b in pairs)
    row.status, row.detail = "ok", f"rank {adapter.rank}, alpha {adapter.alpha:g}, {len(pairs)} modules"
    return merged


def _dit_rows(plan: weights.WeightsPlan, dit_cfg: DiTConfig) -> list[RoleCheck]:
    base = RoleCheck("generator" if plan.generator else "dit")
    lora_rows = [
        RoleCheck(f"lora {i + 1}", plan.rel(p), status="skipped", detail="not checked: no base weights")
        for i, p in enumerate(plan.loras)
    ]

    def dit(row: RoleCheck) -> RoleCheck:
        state, source = weights.dit_base_state(plan, dit_cfg, meta=True)
        row.file, row.dtype = plan.rel(source), _dtypes(state)
        for lora_row, path in zip(lora_rows, plan.loras, strict=True):
            state = _lora_row(lora_row, state, path)
        return _fit(row, WanDiT, dit_cfg, state)

    return [_guard(base, bool(plan.generator or plan.wan_dit), dit)] + lora_rows


def check_plan(plan: weights.WeightsPlan, configs: ModelConfigs, need_pe: bool = True) -> list[RoleCheck]:
    """Every role of the plan, checked against the models `configs` describe (headers only)."""
    rows = _dit_rows(plan, configs.dit)

    def simple(role: str, module_cls: type[nn.Module], cfg: object, state_fn: StateFn) -> RoleCheck:
        def run(row: RoleCheck) -> RoleCheck:
            state = state_fn(plan, meta=True)
            row.file, row.dtype = plan.rel(getattr(plan, role)), _dtypes(state)
            return _fit(row, module_cls, cfg, state)

        return _guard(RoleCheck(role), getattr(plan, role) is not None, run)

    rows.append(simple("vae", WanVAE, configs.vae, weights.vae_state))
    rows.append(simple("t5", UMT5Encoder, configs.t5, weights.t5_state))

    def tokenizer(row: RoleCheck) -> RoleCheck:
        weights.load_tokenizer(plan, configs.t5.text_len)
        row.file = plan.rel(plan.tokenizer)
        return row

    rows.append(_guard(RoleCheck("tokenizer"), plan.tokenizer is not None, tokenizer))
    pe = simple("pe", PECoreVision, configs.pe, weights.pe_state)
    if not need_pe and pe.status == "missing":
        pe.status, pe.detail = "skipped", "not needed (--no-pe)"
    rows.append(pe)
    taehv = simple("taehv", TAEHV, TAEW2_1, weights.taehv_state)
    if taehv.status == "missing":
        taehv.status, taehv.detail = "skipped", "optional (model.decoder = taehv)"
    rows.append(taehv)
    return rows
