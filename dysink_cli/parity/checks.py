"""Compare a run with a fixture: every output tensor within tolerance, every logged decision equal.

A check PASSes, FAILs, or is SKIPped: an output the fixture holds no expected tensor for is
computed but compared with nothing, so it is never reported as a pass. Imports parity.fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dysink_cli.parity.fixture import Fixture


@dataclass(frozen=True)
class Check:
    """One line of the parity report."""

    name: str
    passed: bool  # False only for a failure: a skipped check fails nothing
    detail: str
    skipped: bool = False

    @property
    def status(self) -> str:
        return "SKIP" if self.skipped else "PASS" if self.passed else "FAIL"

    def line(self) -> str:
        return f"{self.status} {self.name}: {self.detail}"


def compare_tensor(fx: Fixture, name: str, mine: Tensor) -> Check:
    """|mine - ref| <= atol + rtol*|ref| element-wise (shape must match)."""
    ref = fx.expected(name)
    label = f"{fx.name}/{name}"
    if ref is None:
        return Check(label, True, "computed; the fixture holds no expected tensor", skipped=True)
    mine = mine.detach().float().cpu()
    if tuple(mine.shape) != tuple(ref.shape):
        return Check(label, False, f"shape {tuple(mine.shape)} != expected {tuple(ref.shape)}")
    atol, rtol = fx.tolerance(name)
    diff = (mine - ref.float()).abs()
    ok = bool(torch.all(diff <= atol + rtol * ref.float().abs())) and not bool(torch.isnan(mine).any())
    return Check(label, ok, f"max_abs={diff.max().item():.3g} (atol {atol:g}, rtol {rtol:g})")


def _blocks_equal(fx: Fixture, what: str, ref_blocks: list[dict], mine_blocks: list[dict], get) -> Check:
    bad = [i for i, (r, m) in enumerate(zip(ref_blocks, mine_blocks, strict=False)) if get(r) != get(m)]
    if len(ref_blocks) != len(mine_blocks):
        return Check(
            f"{fx.name}/decisions:{what}", False, f"{len(mine_blocks)} blocks, expected {len(ref_blocks)}"
        )
    detail = f"{len(ref_blocks) - len(bad)}/{len(ref_blocks)} blocks match"
    if bad:
        first = bad[0]
        detail += f"; first mismatch block {first}: got {get(mine_blocks[first])!r}"
        detail += f", expected {get(ref_blocks[first])!r}"
    return Check(f"{fx.name}/decisions:{what}", not bad, detail)


def _retrieval(rec: dict) -> Any:
    r = rec.get("retrieval")
    if r is None:
        return None
    return (
        sorted(r["excluded_blocks"]),
        list(r["retrieved_blocks_by_score"]),
        list(r["kv_prepend_order_blocks"]),
    )


def _gate(rec: dict) -> Any:
    return [
        (g["step"], g["layer"], [(e["block"], e["gated_off"]) for e in g["entries"]])
        for g in rec.get("gate") or []
    ]


def _dedup(rec: dict) -> Any:
    d = rec.get("dedup")
    return None if d is None else (d["added_to_bank"], rec.get("bank_size_after_block"))


def _switch(rec: dict) -> Any:
    return (
        rec.get("at_frame"),
        rec.get("bank_entry_blocks"),
        rec.get("window_recache_frames"),
        rec.get("effective_local_attn_for_recache"),
    )


def compare_decisions(fx: Fixture, mine: dict[str, Any]) -> list[Check]:
    """Retrieval sets, gate decisions, dedup adds/skips, windows, switch points, re-insertions."""
    ref = fx.log or {}
    checks = []
    if "blocks" in ref:
        ref_b, mine_b = ref["blocks"], mine.get("blocks", [])
        getters = {
            "window": lambda r: r.get("effective_local_attn_frames"),
            "bank": lambda r: r.get("bank_blocks_at_block_start"),
            "retrieval": _retrieval,
            "gate": _gate,
            "dedup": _dedup,
        }
        if any("prompt_segment" in r for r in ref_b):
            getters["prompt_segment"] = lambda r: r.get("prompt_segment")
        checks += [_blocks_equal(fx, what, ref_b, mine_b, get) for what, get in getters.items()]
    if ref.get("switches"):
        checks.append(_blocks_equal(fx, "switches", ref["switches"], mine.get("switches", []), _switch))
        checks.append(
            _blocks_equal(
                fx,
                "entry_recaches",
                ref.get("entry_recaches", []),
                mine.get("entry_recaches", []),
                lambda r: (r["entry_frame"], r["updated"]),
            )
        )
    if "clean_passes" in ref:
        checks.append(
            _blocks_equal(
                fx,
                "rolling_sink",
                ref["clean_passes"],
                mine.get("clean_passes", []),
                lambda r: (r["reinserted"], r.get("source_frames"), r.get("rope_positions")),
            )
        )
    return checks
