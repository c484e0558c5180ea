"""torch.compile for the models' pure elementwise functions, with room for their few shapes."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

# Distinct shapes one function meets in a render: the VAE's norms see 3 channel widths, each at
# 1 frame (specialised) and more (symbolic), in 4-D and 5-D; the DiT's stages a few chunk lengths.
RECOMPILE_LIMIT = 32


def compiled(fn: Callable[..., Any], *, dynamic: bool) -> Callable[..., Any]:
    """fn under torch.compile; recompiling up to RECOMPILE_LIMIT times (torch's default of 8 would
    silently fall back to eager after the VAE's first few shapes)."""
    inner = torch.compile(fn, dynamic=dynamic)

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
            return inner(*args)

    return call
