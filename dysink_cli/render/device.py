"""Where a render runs: `resolve_device("auto" | "cpu" | "cuda[:N]")` and the compute dtypes by name."""

from __future__ import annotations

import torch

from dysink_cli.errors import GpuError

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GpuError("--device cuda was asked for but torch sees no CUDA GPU", "use --device cpu or auto")
    return device
