"""LoRA adapters (PEFT layout): parse one from a weight file's data, merge several into a state dict.

Merged in fp32 as W + (alpha/r) B A, in the order given; only then cast. Imports errors and
io.weight_files (key cleaning).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dysink_cli.errors import WeightsError
from dysink_cli.io.weight_files import FSDP_INFIX, clean_key


@dataclass(frozen=True)
class LoraAdapter:
    """One PEFT adapter: module name -> (A [r, in], B [out, r]); merged as W + (alpha/r) B A."""

    source: str
    rank: int
    alpha: float
    pairs: dict[str, tuple[Tensor, Tensor]]

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


_LORA_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


def parse_lora(obj: Any, source: str | Path) -> LoraAdapter:
    """`generator_lora` (+ `lora_config` rank/alpha) or a raw PEFT dict; `critic_lora` is ignored."""
    config: Mapping[str, Any] = {}
    if isinstance(obj, Mapping) and isinstance(obj.get("generator_lora"), Mapping):
        config = obj.get("lora_config") if isinstance(obj.get("lora_config"), Mapping) else {}
        obj = obj["generator_lora"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        keys = ", ".join(map(str, list(obj)[:6])) if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(
            f"{source}: no LoRA weights found (top-level: {keys})",
            "expected a generator_lora entry or a raw PEFT state dict",
        )
    halves: dict[str, dict[str, Tensor]] = {}
    for key, value in obj.items():
        match = _LORA_KEY.match(key.replace(FSDP_INFIX, ""))
        if match is None:
            raise WeightsError(
                f"{source}: {key} is not a PEFT LoRA key",
                "expected base_model.model.<module>.lora_A/B[.default].weight",
            )
        halves.setdefault(clean_key(match["module"], strip_model=True), {})[match["ab"]] = value
    broken = [m for m, h in halves.items() if len(h) != 2]
    if broken:
        raise WeightsError(
            f"{source}: {len(broken)} modules lack lora_A or lora_B (first: {broken[0]})",
            "the adapter file is incomplete; re-download it",
        )
    first_a = next(iter(halves.values()))["A"]
    rank = int(config.get("rank") or config.get("r") or first_a.shape[0])
    alpha = float(config.get("alpha") or config.get("lora_alpha") or rank)
    for module, h in halves.items():
        if h["A"].ndim != 2 or h["B"].ndim != 2 or h["A"].shape[0] != rank or h["B"].shape[1] != rank:
            raise WeightsError(
                f"{source}: {module} has A {tuple(h['A'].shape)}, B {tuple(h['B'].shape)}, not rank {rank}",
                "check lora_config.rank against the tensors",
            )
    return LoraAdapter(str(source), rank, alpha, {m: (h["A"], h["B"]) for m, h in halves.items()})


def merge_loras(
    state: dict[str, Tensor],
    adapters: list[LoraAdapter],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """W <- W + (alpha/r) B @ A for each adapter in order, in fp32 on `device`; only then is each
    merged weight cast to `dtype` (one weight at a time, so the fp32 copies never pile up).
    """
    updates: dict[str, list[tuple[float, Tensor, Tensor]]] = {}
    for adapter in adapters:
        for module, (a, b) in adapter.pairs.items():
            key = f"{module}.weight"
            w = state.get(key)
            if w is None:
                raise WeightsError(
                    f"{adapter.source}: LoRA for {module}, which the model does not have",
                    "the adapter belongs to another model",
                )
            if w.ndim != 2 or (b.shape[0], a.shape[1]) != tuple(w.shape):
                raise WeightsError(
                    f"{adapter.source}: LoRA {module} gives {b.shape[0]}x{a.shape[1]}, "
                    f"the weight is {tuple(w.shape)}",
                    "the adapter belongs to another model",
                )
            updates.setdefault(key, []).append((adapter.scale, a, b))
    state = dict(state)
    for key, pairs in updates.items():
        merged = state[key].to(device=device, dtype=torch.float32)  # (out, in)
        for scale, a, b in pairs:
            f32 = {"device": merged.device, "dtype": torch.float32}
            merged = torch.addmm(
                merged, b.to(**f32), a.to(**f32), alpha=scale
            )  # new tensor: files stay intact
        state[key] = merged if dtype is None else merged.to(dtype)
    return state
