"""`dysink weights check DIR`: what a weights folder holds and whether render can use it (headers only).

Every role is read on the meta device (safetensors headers; .pt files mmap'd, weights-only), mapped
by the same code the loaders use and compared key by key with the full-size model built on meta.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from torch import Tensor, nn

from dysink_cli.config import CheckpointsSection, resolve_config
from dysink_cli.errors import DysinkError
from dysink_cli.io import weights
from dysink_cli.io.weight_files import compare_keys, lora_from_checkpoint, merge_loras, read_checkpoint
from dysink_cli.model.config import PE_CORE_CONFIGS, UMT5_XXL, WAN_1_3B, WAN_VAE
from dysink_cli.model.dit import WanDiT
from dysink_cli.model.pe_core import PECoreVision
from dysink_cli.model.t5 import UMT5Encoder
from dysink_cli.model.vae import WanVAE

weights_app = typer.Typer(
    help="Inspect checkpoint folders.", no_args_is_help=True, pretty_exceptions_show_locals=False
)


@weights_app.callback()
def _weights() -> None:
    """Inspect checkpoint folders."""


StateFn = Callable[..., dict[str, Tensor]]


@dataclass
class RoleCheck:
    """One table row: a role, its file, dtype, parameter count and what is wrong (if anything)."""

    role: str
    file: str = "-"
    dtype: str = "-"
    params: int = 0
    status: str = "ok"  # "ok" | "missing" | "wrong" | "skipped"
    detail: str = ""


def _dtypes(state: dict[str, Tensor]) -> str:
    return "+".join(sorted({str(v.dtype).removeprefix("torch.") for v in state.values()}))


def _fit(row: RoleCheck, module_cls: type[nn.Module], cfg: object, state: dict[str, Tensor]) -> RoleCheck:
    """Fill dtype/params and compare the keys with the full-size module built on meta."""
    with torch.device("meta"):
        module = module_cls(cfg)
    report = compare_keys(module, state)
    row.params = sum(v.numel() for v in state.values())
    if not report.ok:
        row.status, row.detail = "wrong", report.summary()
    return row


def _guard(row: RoleCheck, present: bool, fn: Callable[[RoleCheck], RoleCheck]) -> RoleCheck:
    """Run one role's check; a CheckpointError becomes the row's status and detail."""
    try:
        return fn(row)
    except DysinkError as err:
        row.status, row.detail = ("wrong" if present else "missing"), err.message
        return row


def _dit_rows(plan: weights.WeightsPlan) -> list[RoleCheck]:
    base = RoleCheck("generator" if plan.generator else "dit")
    lora_rows = [
        RoleCheck(f"lora {i + 1}", plan.rel(p), status="skipped", detail="not checked: no base weights")
        for i, p in enumerate(plan.loras)
    ]

    def dit(row: RoleCheck) -> RoleCheck:
        state, source = weights.dit_base_state(plan, WAN_1_3B, meta=True)
        row.file, row.dtype = plan.rel(source), _dtypes(state)
        for lora_row, path in zip(lora_rows, plan.loras, strict=True):
            try:
                adapter = lora_from_checkpoint(read_checkpoint(path, meta=True), path)
                state = merge_loras(state, [adapter])
            except DysinkError as err:
                lora_row.status, lora_row.detail = "wrong", err.message
                continue
            pairs = list(adapter.pairs.values())
            lora_row.dtype = _dtypes({str(i): t for i, pair in enumerate(pairs) for t in pair})
            lora_row.params = sum(a.numel() + b.numel() for a, b in pairs)
            lora_row.status = "ok"
            lora_row.detail = f"rank {adapter.rank}, alpha {adapter.alpha:g}, {len(pairs)} modules"
        return _fit(row, WanDiT, WAN_1_3B, state)

    return [_guard(base, bool(plan.generator or plan.wan_dit), dit)] + lora_rows


def check_plan(plan: weights.WeightsPlan, pe_core: str, need_pe: bool) -> list[RoleCheck]:
    """Every role of the plan, checked against the full-size models (headers only)."""
    rows = _dit_rows(plan)

    def simple(role: str, module_cls: type[nn.Module], cfg: object, state_fn: StateFn) -> RoleCheck:
        def run(row: RoleCheck) -> RoleCheck:
            state = state_fn(plan, meta=True)
            row.file, row.dtype = plan.rel(getattr(plan, role)), _dtypes(state)
            return _fit(row, module_cls, cfg, state)

        return _guard(RoleCheck(role), getattr(plan, role) is not None, run)

    rows.append(simple("vae", WanVAE, WAN_VAE, weights.vae_state))
    rows.append(simple("t5", UMT5Encoder, UMT5_XXL, weights.t5_state))

    def tokenizer(row: RoleCheck) -> RoleCheck:
        weights.load_tokenizer(plan, UMT5_XXL.text_len)
        row.file = plan.rel(plan.tokenizer)
        return row

    rows.append(_guard(RoleCheck("tokenizer"), plan.tokenizer is not None, tokenizer))
    pe = simple("pe", PECoreVision, PE_CORE_CONFIGS[pe_core], weights.pe_state)
    if not need_pe and pe.status == "missing":
        pe.status, pe.detail = "skipped", "not needed (--no-pe)"
    rows.append(pe)
    return rows


def _table(rows: list[RoleCheck]) -> Table:
    table = Table(title_justify="left")
    for name, justify in (
        ("role", "left"),
        ("file", "left"),
        ("dtype", "left"),
        ("params", "right"),
        ("status", "left"),
    ):
        table.add_column(name, justify=justify)
    colors = {"ok": "green", "missing": "red", "wrong": "red", "skipped": "yellow"}
    for r in rows:
        table.add_row(
            r.role,
            escape(r.file),
            r.dtype,
            f"{r.params:,}" if r.params else "-",
            f"[{colors[r.status]}]{r.status}[/]",
        )
    return table


def _fail(exc: DysinkError) -> typer.Exit:
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(exc.exit_code)


@weights_app.command("check")
def check(
    directory: Annotated[Path, typer.Argument(help="weights folder")],
    preset: Annotated[str | None, typer.Option(help="use this preset's [checkpoints] manifest")] = None,
    pe_core: Annotated[str, typer.Option(help="PE-Core size to check against")] = "PE-Core-S16-384",
    no_pe: Annotated[bool, typer.Option("--no-pe", help="PE-Core is optional (no dysink policy)")] = False,
) -> None:
    """Read headers only; print each role's file, dtype, parameter count and status. Exit 0 if usable."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        if pe_core not in PE_CORE_CONFIGS:
            raise DysinkError(f"unknown --pe-core {pe_core!r}", f"use one of {', '.join(PE_CORE_CONFIGS)}")
        manifest = resolve_config(preset).checkpoints if preset else CheckpointsSection()
        plan = weights.discover(directory, manifest)
    except DysinkError as err:
        raise _fail(err) from None
    rows = check_plan(plan, pe_core, need_pe=not no_pe)
    console.print(escape(plan.describe()))
    console.print(_table(rows))
    problems = [r for r in rows if r.status in ("missing", "wrong")]
    for r in rows:
        if r.detail:
            console.print(f"[{'red' if r in problems else 'dim'}]{r.role}:[/] {escape(r.detail)}")
    if problems:
        console.print(f"[red]not usable:[/red] {', '.join(r.role for r in problems)}")
        raise typer.Exit(2)
    console.print("[green]usable[/green]")
