"""The state protocol of everything a render checkpoints (nanochat's habit): an owner returns its
state as tensors plus plain JSON-able metadata, and takes it back on a fresh object of the same
shape. Owners of owners nest their parts' states with `join_states`/`split_states`, the one place
that builds the "part.key" tensor names. Pure Python; imports nothing of dysink.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import Tensor

State = tuple[dict[str, Tensor], dict[str, Any]]


class Stateful(Protocol):
    def state(self) -> State: ...

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None: ...


def join_states(parts: dict[str, State]) -> State:
    """{"cache": (tensors, meta), ...} -> one state: tensors named "cache.k", meta under "cache"."""
    tensors = {f"{name}.{key}": t for name, (ts, _) in parts.items() for key, t in ts.items()}
    return tensors, {name: meta for name, (_, meta) in parts.items()}


def split_states(tensors: dict[str, Tensor], meta: dict[str, Any], names: list[str]) -> dict[str, State]:
    """Inverse of join_states for the parts `names` (a missing part gets empty tensors and meta)."""
    out: dict[str, State] = {}
    for name in names:
        prefix = name + "."
        own = {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}
        out[name] = (own, meta.get(name) or {})
    return out
