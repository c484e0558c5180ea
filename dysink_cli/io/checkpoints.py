"""Strict weight loading: every key and shape checked, one error naming the first mismatches."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from dysink_cli.errors import CheckpointError


def load_strict(module: nn.Module, state_dict: dict[str, Tensor], source: str | Path) -> nn.Module:
    """Load `state_dict` into `module` (possibly on meta) with exact keys and shapes, assign=True."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} wrong shapes (first: {shapes[0]})")
        raise CheckpointError(f"{source}: weights do not fit the model: {'; '.join(parts)}",
                              "check that the file is for this model and size")
    on_meta = any(p.is_meta for p in module.parameters())
    dtypes = {k: v.dtype for k, v in expected.items()}
    cast = {k: v if on_meta else v.to(dtypes[k]) for k, v in state_dict.items()}
    module.load_state_dict(cast, strict=True, assign=on_meta)
    return module


def materialize(module: nn.Module, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> nn.Module:
    """Cast/move a loaded module and freeze it for inference."""
    module.to(device=device, dtype=dtype)
    module.eval().requires_grad_(False)
    return module
