"""KVCache: the self-attention cache of every layer, with the LongLive/DySink index semantics.

One buffer (L, B, S, H, D) for K (post-RoPE) and one for V, plus the two reference counters
`global_end` (absolute tokens written) and `local_end` (valid tokens in the buffer). A static
sink occupies the first `sink_frames`; the rest rolls. `begin()` is the only place that moves
positions; the model sees a `CacheCall` that writes the call's K/V and returns the keys to attend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class CallPlan:
    """Token ranges of one model call (all in buffer positions)."""

    write_start: int  # first slot written (sink-protected on recompute)
    new_start: int  # slot of the call's first token (new_local_end - n)
    new_local_end: int
    window: tuple[tuple[int, int], ...]  # ranges attended, in order (sink first)
    sink_tokens: int  # how many leading attended tokens are the static sink
    end: int  # absolute token index one past the call's tokens
    evict: int  # tokens rolled out before the call (0: no roll)
    recompute: bool  # the call rewrites an already-written range (counters stay)


class CacheCall:
    """The cache as one forward sees it: `attend_kv` writes layer K/V and returns what to attend."""

    def __init__(
        self,
        cache: KVCache,
        plan: CallPlan,
        raw_range: tuple[int, int] | None,
        sink_transform: Callable[[int, Tensor], Tensor] | None = None,
    ) -> None:
        self.cache, self.plan, self.raw_range = cache, plan, raw_range
        self.sink_transform = sink_transform  # relative RoPE: re-rotate the sink's keys per layer

    def attend_kv(self, layer: int, k: Tensor, v: Tensor, k_raw: Tensor) -> tuple[Tensor, Tensor, int]:
        p, c = self.plan, self.cache
        skip = p.write_start - p.new_start
        c.k[layer, :, p.write_start : p.new_local_end] = k[:, skip:]
        c.v[layer, :, p.write_start : p.new_local_end] = v[:, skip:]
        if self.raw_range is not None:
            lo, hi = self.raw_range
            c.raw_k[layer, :, lo:hi] = k_raw
            c.raw_v[layer, :, lo:hi] = v
        keys, values = c.window(layer, p.window)
        if self.sink_transform is not None and p.sink_tokens:
            keys = torch.cat(
                [self.sink_transform(layer, keys[:, : p.sink_tokens]), keys[:, p.sink_tokens :]], dim=1
            )
        return keys, values, p.sink_tokens


class KVCache:
    """Preallocated per-layer K/V with a static sink and a rolling window (LongLive 1.0 rules)."""

    def __init__(
        self,
        num_layers: int,
        batch: int,
        capacity_frames: int,
        tokens_per_frame: int,
        num_heads: int,
        head_dim: int,
        sink_frames: int = 0,
        raw_frames: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        self.tokens_per_frame = tokens_per_frame
        self.capacity = capacity_frames * tokens_per_frame
        self.sink = sink_frames * tokens_per_frame
        shape = (num_layers, batch, self.capacity, num_heads, head_dim)  # (L, B, S, H, D)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.global_end = 0
        self.local_end = 0
        # Un-rotated K and V of the first `raw_frames` frames (Rolling Sink's "originals").
        self.raw_tokens = raw_frames * tokens_per_frame
        raw_shape = (num_layers, batch, self.raw_tokens, num_heads, head_dim)
        self.raw_k = torch.zeros(raw_shape, dtype=dtype, device=device) if raw_frames else None
        self.raw_v = torch.zeros(raw_shape, dtype=dtype, device=device) if raw_frames else None

    def plan(
        self, start_frame: int, num_frames: int, window_frames: int, protect_sink: bool = True
    ) -> CallPlan:
        """Pure bookkeeping of a call: roll amount, write slots, attended ranges (no tensor work).

        Positions are those after the roll, which begin() applies.
        """
        tpf, n = self.tokens_per_frame, num_frames * self.tokens_per_frame
        start = start_frame * tpf
        end = start + n
        recompute = end <= self.global_end and start > 0
        rolls = end > self.global_end and self.local_end + n > self.capacity
        evict = self.local_end + n - self.capacity if rolls else 0
        new_local_end = self.local_end + (end - self.global_end) - evict
        new_start = new_local_end - n
        write_start = max(new_start, self.sink) if recompute and protect_sink else new_start
        budget = window_frames * tpf
        if self.sink == 0:
            window = ((max(0, new_local_end - budget), new_local_end),)
        else:
            local_from = max(self.sink, new_local_end - (budget - self.sink))
            # a full LongLive buffer makes sink and window adjacent: one slice, no per-layer cat
            adjacent = local_from == self.sink
            window = ((0, new_local_end),) if adjacent else ((0, self.sink), (local_from, new_local_end))
        return CallPlan(write_start, new_start, new_local_end, window, self.sink, end, evict, recompute)

    def begin(
        self,
        start_frame: int,
        num_frames: int,
        window_frames: int,
        protect_sink: bool = True,
        sink_transform: Callable[[int, Tensor], Tensor] | None = None,
    ) -> CacheCall:
        """Start a model call over frames [start_frame, +num_frames): roll if needed, advance counters."""
        plan = self.plan(start_frame, num_frames, window_frames, protect_sink)
        if plan.evict:
            self._roll(plan.evict)
        if plan.write_start < plan.new_start or plan.new_start < 0:
            raise AssertionError(f"cache call does not fit: {plan}")
        raw_range = None
        if self.raw_tokens and plan.end <= self.raw_tokens:
            raw_range = (plan.new_start, plan.new_local_end)
        if not plan.recompute:
            self.global_end, self.local_end = plan.end, plan.new_local_end
        return CacheCall(self, plan, raw_range, sink_transform)

    def _roll(self, evict: int) -> None:
        """Shift [sink+evict, local_end) down to `sink`; the sink never moves."""
        keep = self.local_end - evict - self.sink
        src = slice(self.sink + evict, self.sink + evict + keep)
        dst = slice(self.sink, self.sink + keep)
        self.k[:, :, dst] = self.k[:, :, src].clone()
        self.v[:, :, dst] = self.v[:, :, src].clone()
        self.local_end -= evict

    def window(self, layer: int, ranges: tuple[tuple[int, int], ...]) -> tuple[Tensor, Tensor]:
        """K, V of `layer` over the attended ranges: (B, n, H, D) each."""
        if len(ranges) == 1:
            lo, hi = ranges[0]
            return self.k[layer, :, lo:hi], self.v[layer, :, lo:hi]
        keys = torch.cat([self.k[layer, :, lo:hi] for lo, hi in ranges], dim=1)
        values = torch.cat([self.v[layer, :, lo:hi] for lo, hi in ranges], dim=1)
        return keys, values

    def last_tokens(self, n: int) -> tuple[Tensor, Tensor]:
        """K, V of the last n valid tokens of every layer: (L, B, n, H, D) copies."""
        lo = self.local_end - n
        return self.k[:, :, lo : self.local_end].clone(), self.v[:, :, lo : self.local_end].clone()

    def overwrite(self, start: int, k: Tensor, v: Tensor) -> None:
        """Replace buffer slots [start, start + n) of every layer (Rolling Sink re-insertion)."""
        n = k.shape[2]
        self.k[:, :, start : start + n] = k
        self.v[:, :, start : start + n] = v

    def place(self, start_frame: int) -> None:
        """Make an empty cache continue at `start_frame` (a bank entry re-cached at its own position)."""
        if self.local_end:
            raise AssertionError("place() needs an empty cache")
        self.global_end = start_frame * self.tokens_per_frame

    def state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The valid slots (and Rolling Sink's originals) and both counters."""
        end = self.local_end
        tensors = {"k": self.k[:, :, :end], "v": self.v[:, :, :end]}
        if self.raw_k is not None and self.raw_v is not None:
            tensors |= {"raw_k": self.raw_k, "raw_v": self.raw_v}
        return tensors, {"global_end": self.global_end, "local_end": end}

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of state() on a cache of the same geometry."""
        end = int(meta["local_end"])
        self.k[:, :, :end] = tensors["k"].to(self.k.device)
        self.v[:, :, :end] = tensors["v"].to(self.v.device)
        self.global_end, self.local_end = int(meta["global_end"]), end
        if self.raw_k is not None and self.raw_v is not None:
            self.raw_k.copy_(tensors["raw_k"])
            self.raw_v.copy_(tensors["raw_v"])

    def zero(self) -> None:
        """Zero every slot, keeping the counters (the reference's switch with global_sink off)."""
        self.k.zero_()
        self.v.zero_()
