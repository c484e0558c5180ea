"""DySink dynamic frame sinks: the memory bank's policy around the block loop (DySink section 3).

Owns the MemoryBank (and closes it) and the recent-descriptor queue: retrieval before a block
(exclusion, top-k, frame-ordered K/V), and after it dedup and store of the block whose descriptor
the caller hands in. Decisions are logged as records. Imports engine.memory, engine.kv_cache.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dysink_cli.engine.kv_cache import KVCache
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.bank import BankEntry, MemoryBank
from dysink_cli.engine.memory.retrieval import (
    dedup_max_similarity,
    effective_window,
    excluded_mask,
    retrieval_scores,
    select_top_k,
)


class DySinkMemory:
    """Bank + query queue + the reference's retrieval and dedup rules."""

    def __init__(self, spec: LoopSpec, bank: MemoryBank) -> None:
        self.spec, self.bank = spec, bank
        self.queries: deque[Tensor] = deque(maxlen=spec.query_blocks)

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The query queue and the bank's index (its payloads stay in its work folder, flushed)."""
        tensors: dict[str, Tensor] = {}
        if self.queries:
            tensors["queries"] = torch.stack(list(self.queries))
        bank = self.bank.checkpoint() if self.bank.work_dir is not None else None
        if bank is not None:
            tensors["bank_descriptors"] = bank.pop("descriptors")
        return tensors, {"queries": len(self.queries), "bank": bank}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of state(), on a fresh memory whose bank opened the same work folder."""
        self.queries.clear()
        if meta.get("queries"):
            self.queries.extend(tensors["queries"].unbind(0))
        if meta.get("bank") is not None:
            self.bank.load_state({**meta["bank"], "descriptors": tensors["bank_descriptors"]})

    def close(self) -> None:
        self.bank.close()

    def window_frames(self) -> int:
        s = self.spec
        return effective_window(s.window_frames, s.frames_per_block, s.top_k, len(self.bank))

    def block_id(self, frame_index: int) -> int:
        return frame_index // self.spec.frames_per_block

    def retrieve(
        self,
        start_frame: int,
        window: int,
        device: torch.device,
        dtype: torch.dtype,
        query: Tensor | None = None,
    ) -> tuple[list[list[tuple[Tensor, Tensor]]] | None, dict[str, Any] | None]:
        """Top-k entries for the block at start_frame: per-layer (k, v) in frame order, and a record.
        `query` (D,) replaces the recent blocks' descriptors as the one query (an oracle's)."""
        if (not self.queries and query is None) or not len(self.bank):
            return None, None
        s = self.spec
        exclusion, frames, scores, picked, order = self._select(start_frame, window, query)
        self.bank.prefetch(order)
        roundtrip = torch.bfloat16 if s.retrieved_bf16_roundtrip else None
        memory = self.bank.layer_kv(order, roundtrip, device, dtype) if order else None
        shut = set(range(s.sink_frames)) | set(range(max(0, start_frame - exclusion), start_frame))
        excluded_frames = sorted(shut)
        record = {
            "num_query_descriptors": len(self.queries) if query is None else 1,
            "excluded_frames": excluded_frames,
            "excluded_blocks": sorted({self.block_id(f) for f in excluded_frames}),
            "similarity_per_bank_block": {
                str(self.block_id(f)): float(v) for f, v in zip(frames, scores.tolist(), strict=True)
            },
            "retrieved_blocks_by_score": [self.block_id(frames[p]) for p in picked],
            "kv_prepend_order_blocks": [self.block_id(frames[p]) for p in order],
            "retrieved_frames": [frames[p] for p in order],
            "retrievable_frames": [f for f in frames if f not in shut],
        }
        return memory, record

    def _select(
        self, start_frame: int, window: int, query: Tensor | None = None
    ) -> tuple[int, list[int], Tensor, list[int], list[int]]:
        """Exclusion span, bank frames, scores, top-k positions by score, and those in frame order."""
        s = self.spec
        exclusion = window if s.exclusion == "reference" else window - s.frames_per_block
        frames = self.bank.frame_indices
        excluded = excluded_mask(frames, start_frame, exclusion, s.sink_frames)
        queries = torch.stack(list(self.queries)) if query is None else query.float().cpu()[None]  # (Q, D)
        scores = retrieval_scores(queries, self.bank.descriptors())
        picked = select_top_k(scores, excluded, s.top_k)
        return exclusion, frames, scores, picked, sorted(picked, key=lambda p: frames[p])

    def remember(
        self, start_frame: int, latents: Tensor, descriptor: Tensor, cache: KVCache, tokens: int
    ) -> dict[str, Any]:
        """After the clean pass: dedup the block's descriptor against every entry, store, queue it."""
        descriptor = descriptor.float().cpu()
        frames = self.bank.frame_indices
        max_sim, sims = dedup_max_similarity(descriptor, self.bank.descriptors())
        add = not len(self.bank) or max_sim <= self.spec.dedup_threshold
        if add:
            k, v = cache.last_tokens(tokens)
            self.bank.add(BankEntry(start_frame, descriptor, k, v, latents.detach()))
        self.queries.append(descriptor)
        if len(self.bank):  # the next block's retrieval is decided now: start its loads early
            self.bank.prefetch(
                self._select(start_frame + self.spec.frames_per_block, self.window_frames())[4]
            )
        return {
            "descriptor": descriptor,
            "max_similarity_to_bank": max_sim if frames else None,
            "similarity_per_bank_block": {
                str(self.block_id(f)): s for f, s in zip(frames, sims, strict=True)
            },
            "added_to_bank": add,
        }

    def recache_entries(
        self, forward_entry: Callable[[BankEntry], tuple[Tensor, Tensor]]
    ) -> list[dict[str, Any]]:
        """Prompt switch: recompute every entry's K/V alone with the new prompt (bank order)."""
        records = []
        for pos in range(len(self.bank)):
            entry = self.bank.entry(pos)
            k, v = forward_entry(entry)
            self.bank.replace_kv(pos, k, v)
            records.append({"entry_frame": entry.frame_index, "updated": True})
        return records
