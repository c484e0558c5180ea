"""BlockGenerator: the causal block loop. Owns the KV cache, the DySink memory (and so the bank)
and the noise; state() / load_state() checkpoint all of it.

Per block: (1) pick the window, (2) retrieve memory (DySink), (3) denoise with the few-step
sampler, (4) run the clean t=0 pass that writes the block's K/V, (5) apply the policy's
after-block step (Rolling Sink re-insertion). DySink's store waits for finish_block(descriptor):
the caller decodes the block and hands its descriptor in (the engine never calls back up).
Prompt switches re-cache K/V. Imports engine and model only.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dysink_cli.engine.graphs import GraphedDiT
from dysink_cli.engine.kv_cache import KVCache
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.bank import BankEntry, MemoryBank
from dysink_cli.engine.memory.policy import DySinkMemory
from dysink_cli.engine.noise import NoiseSource
from dysink_cli.engine.rolling_sink import reinsert
from dysink_cli.engine.sampler import flow_to_x0, renoise
from dysink_cli.engine.schedule import sigma_of
from dysink_cli.engine.state import State, join_states, split_states
from dysink_cli.engine.timing import NullTimer, StageTimer
from dysink_cli.model.dit import AttnContext, WanDiT
from dysink_cli.model.rope import Rope, RopeSpec, layer_freqs, rope_tables, shift_temporal, wan_frequencies


@dataclass
class BlockOutput:
    """One finished block: clean latents (B, F, C, H, W) and its decision record."""

    index: int
    start_frame: int
    latents: Tensor
    x0_per_step: list[Tensor]
    record: dict[str, Any] = field(default_factory=dict)


class BlockGenerator:
    """Generates latent blocks one after another for one video."""

    def __init__(
        self,
        dit: WanDiT,
        spec: LoopSpec,
        noise: NoiseSource,
        latent_hw: tuple[int, int],
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch: int = 1,
        backend: str = "sdpa",
        rope: RopeSpec | None = None,
        timer: StageTimer | None = None,
        bank: MemoryBank | None = None,
        graphs: bool = False,
    ) -> None:
        cfg = dit.cfg
        self.dit, self.spec, self.noise = dit, spec, noise
        self.device, self.dtype, self.batch, self.backend = torch.device(device), dtype, batch, backend
        self.latent_hw = latent_hw
        self.grid_hw = (latent_hw[0] // cfg.patch_size[1], latent_hw[1] // cfg.patch_size[2])
        self.tokens_per_frame = cfg.tokens_per_frame(*latent_hw)
        self.freqs = rope or wan_frequencies(cfg.head_dim, cfg.rope_theta)
        raw = spec.horizon_frames if spec.policy == "rolling-sink" else 0
        self.cache = self.new_cache(spec.capacity_frames, spec.sink_frames, raw)
        self.memory = (
            DySinkMemory(spec, bank if bank is not None else MemoryBank()) if spec.uses_memory else None
        )
        self.sigmas = [sigma_of(t, spec.shift).to(self.device) for t in spec.timesteps]
        self.recent: deque[Tensor] = deque(maxlen=spec.capacity_frames // spec.frames_per_block + 1)
        self.block = 0
        self.text_kv: list[tuple[Tensor, Tensor]] | None = None
        self.timer = timer or NullTimer()
        self._rope_cache: tuple[tuple[int, int], Rope] | None = None
        self._unstored: BlockOutput | None = None  # a deferred DySink store (finish_block)
        half = dtype in (torch.float16, torch.bfloat16)
        use_graphs = graphs and self.device.type == "cuda" and half
        self.graphs = GraphedDiT(dit, backend, spec.top_k if spec.uses_memory else 0) if use_graphs else None

    def new_cache(self, capacity_frames: int, sink_frames: int = 0, raw_frames: int = 0) -> KVCache:
        cfg = self.dit.cfg
        return KVCache(
            cfg.num_layers,
            self.batch,
            capacity_frames,
            self.tokens_per_frame,
            cfg.num_heads,
            cfg.head_dim,
            sink_frames,
            raw_frames,
            self.dtype,
            self.device,
        )

    def rope_table(self, start_frame: int, num_frames: int) -> Rope:
        """The RoPE table of a chunk; the last one is reused (a block's 5 calls share it)."""
        key = (start_frame, num_frames)
        if self._rope_cache is None or self._rope_cache[0] != key:
            frames = torch.arange(start_frame, start_frame + num_frames)
            self._rope_cache = (key, rope_tables(self.freqs, frames, *self.grid_hw, self.device))
        return self._rope_cache[1]

    def _to_device(self, noise: Tensor) -> Tensor:
        """Host noise to the compute device without stalling the stream (pinned, async copy)."""
        if self.device.type == "cuda":
            noise = noise.pin_memory().to(self.device, non_blocking=True)
        return noise.to(self.device, self.dtype)

    def window_frames(self) -> int:
        return self.memory.window_frames() if self.memory else self.spec.window_frames

    def set_prompt(self, text_kv: list[tuple[Tensor, Tensor]]) -> None:
        """Cross-attention K/V of the prompt in force (model.encode_text)."""
        self.text_kv = text_kv

    def forward(
        self,
        latents: Tensor,
        timestep: float,
        start_frame: int,
        window: int,
        memory: list | None = None,
        cache: KVCache | None = None,
        protect_sink: bool = True,
        repeated: bool = False,
    ) -> tuple[Tensor, AttnContext]:
        """One DiT call over latents (B, F, C, H, W) at `start_frame`; returns flow in the same layout.

        repeated: a call the block loop makes every block (replayed from a CUDA graph when on).
        """
        assert self.text_kv is not None, "set_prompt() first"
        frames = latents.shape[1]
        cache = cache or self.cache
        call = cache.begin(start_frame, frames, window, protect_sink, self._sink_shift(cache, start_frame))
        s = self.spec
        sink_gate = s.uses_memory and s.gate_rule != "off" and cache.sink > 0
        ctx = AttnContext(
            call, memory, s.gate_rule if memory else "off", s.gate_threshold, sink_gate=sink_gate
        )
        t = torch.full((latents.shape[0], frames), timestep, dtype=torch.float32, device=self.device)
        x, rope = latents.permute(0, 2, 1, 3, 4), self.rope_table(start_frame, frames)
        if repeated and self.graphs is not None and cache is self.cache and call.sink_transform is None:
            flow, ctx = self.graphs(x, t, self.text_kv, rope, ctx)
        else:
            flow = self.dit(x, t, self.text_kv, rope, ctx, self.backend)
        return flow.permute(0, 2, 1, 3, 4), ctx

    @property
    def needs_descriptor(self) -> bool:
        """The last block waits for finish_block(descriptor) (DySink) before the next call."""
        return self._unstored is not None

    def _check_finished(self) -> None:
        if self._unstored is not None:
            raise AssertionError("finish_block(descriptor) before the next call into the generator")

    @torch.no_grad()
    def next_block(self, query: Tensor | None = None) -> BlockOutput:
        """Generate the next block (numbered steps as in the module docstring). With DySink the
        block's store waits for finish_block(descriptor), so its frames can be handed on first.
        `query` (D,): retrieve with this descriptor instead of the recent blocks' (an oracle's)."""
        self._check_finished()
        s, b = self.spec, self.block
        f0 = b * s.frames_per_block
        shape = (self.batch, s.frames_per_block, self.dit.cfg.in_dim, *self.latent_hw)
        record: dict[str, Any] = {"block": b, "start_frame": f0}
        if self.graphs is not None:
            self.graphs.next_block()
        # 1. window (DySink widens it while the bank is short)
        window = self.window_frames()
        record["effective_local_attn_frames"] = window
        # 2. retrieval
        memory = None
        if self.memory is not None:
            record["bank_blocks_at_block_start"] = [
                self.memory.block_id(f) for f in self.memory.bank.frame_indices
            ]
            with self.timer.stage("retrieve"):
                memory, record["retrieval"] = self.memory.retrieve(f0, window, self.device, self.dtype, query)
        if memory and s.rope_mode == "relative":
            memory = self._clamp_memory(
                memory, record["retrieval"]["retrieved_frames"], f0, record["retrieval"]
            )
        # 3. denoise: predict x0, re-noise with fresh noise
        x = self._to_device(self.noise.initial(b, shape))
        x0_steps, gates = [], []
        for step, timestep in enumerate(s.timesteps):
            with self.timer.stage("denoise"):
                flow, ctx = self.forward(x, timestep, f0, window, memory, repeated=True)
                x0 = flow_to_x0(x, flow, self.sigmas[step])
            x0_steps.append(x0)
            gates.append(ctx)
            if step + 1 < len(s.timesteps):
                eps = self._to_device(self.noise.step(b, step, shape))
                x = renoise(x0, eps, self.sigmas[step + 1])
        record["gate"] = gate_records(gates, record.get("retrieval"))
        if any(ctx.sink_dropped for ctx in gates):
            record["sink_gate_dropped"] = [ctx.sink_dropped for ctx in gates]  # (step, layer)
        # 4.-5. the clean pass writes the block's K/V (never sees retrieved memory), then the policy
        return self._commit(BlockOutput(b, f0, x0, x0_steps, record), window, repeated=True)

    @torch.no_grad()
    def prefill(self, latents: Tensor) -> BlockOutput:
        """Take given clean latents (B, frames_per_block, C, H, W) as the next block: the clean pass
        writes them into the cache exactly as a generated block's (a picture or a video to start
        from). With DySink the block waits for finish_block(descriptor) like a generated one."""
        self._check_finished()
        s, b = self.spec, self.block
        if latents.shape[1] != s.frames_per_block or latents.shape[2] != self.dit.cfg.in_dim:
            raise ValueError(
                f"prefill takes one block of {s.frames_per_block} latent frames, got {tuple(latents.shape)}"
            )
        if self.graphs is not None:
            self.graphs.next_block()
        window = self.window_frames()
        record: dict[str, Any] = {"block": b, "start_frame": b * s.frames_per_block, "prefilled": True}
        record["effective_local_attn_frames"] = window
        x0 = latents.to(self.device, self.dtype)
        return self._commit(BlockOutput(b, b * s.frames_per_block, x0, [], record), window, repeated=False)

    def _commit(self, out: BlockOutput, window: int, repeated: bool) -> BlockOutput:
        """Steps 4 and 5 of a block whose clean latents are known: the clean pass at t = context,
        the policy's after-block step, the block counted (DySink's store waits for finish_block)."""
        s = self.spec
        with self.timer.stage("clean_pass"):
            self.forward(out.latents, s.context_timestep, out.start_frame, window, repeated=repeated)
        if s.policy == "rolling-sink":
            done = reinsert(
                self.cache, out.start_frame, s.horizon_frames, s.frames_per_block, self.freqs, self.grid_hw
            )
            out.record["rolling_sink"] = (
                None if done is None else {"source_frames": done[0], "rope_first": done[1]}
            )
        self._unstored = out if self.memory is not None else None
        self.recent.append(out.latents)
        self.block += 1
        return out

    @torch.no_grad()
    def finish_block(self, descriptor: Tensor | None = None) -> None:
        """DySink: dedup the last block's descriptor (D,) against the bank and store the block.

        No-op for policies without memory. Reads the block's K/V from the cache, so it runs
        before the next call into the model.
        """
        out, self._unstored = self._unstored, None
        if out is None or self.memory is None:
            return
        if descriptor is None:
            raise ValueError("the dysink policy needs the finished block's descriptor")
        with self.timer.stage("remember"):
            tokens = self.spec.frames_per_block * self.tokens_per_frame
            out.record["dedup"] = self.memory.remember(
                out.start_frame, out.latents, descriptor, self.cache, tokens
            )
        out.record["bank_size_after_block"] = len(self.memory.bank)

    def close(self) -> None:
        """Finish the memory bank's queued writes and stop its threads."""
        if self.memory is not None:
            self.memory.close()

    def state(self) -> State:
        """Everything needed to continue bit-exactly: the cache, the recent latents, the memory.

        The bank's payloads stay in its work folder (its checkpoint flushes them).
        """
        self._check_finished()
        recent = {"latents": torch.stack(list(self.recent))} if self.recent else {}
        parts = {
            "cache": self.cache.state(),
            "recent": (recent, {"count": len(self.recent)}),
            "block": ({}, {"index": self.block}),
        }
        if self.memory is not None:
            parts["memory"] = self.memory.state()
        tensors, meta = join_states(parts)
        return {k: v.contiguous() for k, v in tensors.items()}, meta

    def load_state(self, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
        """Inverse of state() on a fresh generator built with the same settings."""
        parts = split_states(tensors, meta, ["cache", "recent", "block", "memory"])
        self.cache.load_state(*parts["cache"])
        self.recent.clear()
        if parts["recent"][1].get("count"):
            self.recent.extend(t.to(self.device) for t in parts["recent"][0]["latents"].unbind(0))
        if self.memory is not None:
            self.memory.load_state(*parts["memory"])
        self.block = int(parts["block"][1]["index"])

    @torch.no_grad()
    def switch_prompt(self, text_kv: list[tuple[Tensor, Tensor]]) -> dict[str, Any]:
        """New prompt from the next block on: re-cache bank entries and the recent window (spec s7)."""
        self._check_finished()
        s = self.spec
        self.text_kv = text_kv
        record: dict[str, Any] = {"at_frame": self.block * s.frames_per_block}
        if self.memory is not None:
            record["bank_entry_blocks"] = [self.memory.block_id(f) for f in self.memory.bank.frame_indices]
            record["entry_recaches"] = self.memory.recache_entries(self._recache_entry)
        window = self.window_frames()
        f = self.block * s.frames_per_block
        n = min(window, f)
        record["effective_local_attn_for_recache"] = window
        record["window_recache_frames"] = list(range(f - n, f))
        if s.zero_cache_on_switch:
            self.cache.zero()
        if n:
            latents = torch.cat(list(self.recent), dim=1)[:, -n:]
            self.forward(latents, s.context_timestep, f - n, window, protect_sink=not s.zero_cache_on_switch)
        return record

    def _delta(self, key_frame: int, query_frame: int) -> int:
        """Relative RoPE: frames to move a key forward so its distance is at most the clamp."""
        return max(0, query_frame - key_frame - self.spec.max_distance_frames)

    def _clamp_memory(self, memory: list, frames: list[int], f0: int, record: dict[str, Any]) -> list:
        """Re-rotate retrieved entries that sit further back than rope.max_distance (relative mode)."""
        deltas = [self._delta(f, f0) for f in frames]
        record["rope_shift_frames"] = deltas
        return [
            [
                (shift_temporal(k, d, layer_freqs(self.freqs, layer)), v)
                for (k, v), d in zip(entries, deltas, strict=True)
            ]
            for layer, entries in enumerate(memory)
        ]

    def _sink_shift(self, cache: KVCache, start_frame: int) -> Any:
        if self.spec.rope_mode != "relative" or not cache.sink:
            return None
        delta = self._delta(0, start_frame)
        if delta == 0:
            return None
        return lambda layer, keys: shift_temporal(keys, delta, layer_freqs(self.freqs, layer))

    def _recache_entry(self, entry: BankEntry) -> tuple[Tensor, Tensor]:
        """An entry's 3 frames alone at t=0 in a fresh 3-frame cache at their original positions."""
        fpb = self.spec.frames_per_block
        temp = self.new_cache(fpb)
        temp.place(entry.frame_index)
        self.forward(
            entry.latent.to(self.device, self.dtype),
            self.spec.context_timestep,
            entry.frame_index,
            fpb,
            cache=temp,
            protect_sink=False,
        )
        return temp.k, temp.v


def gate_records(contexts: list[AttnContext], retrieval: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per (step, layer) gate decisions: rho and gated_off of each retrieved entry (one sync per block)."""
    if not retrieval or not retrieval["kv_prepend_order_blocks"]:
        return []
    blocks = retrieval["kv_prepend_order_blocks"]
    out = []
    for step, ctx in enumerate(contexts):
        if not ctx.gate_ratios:
            continue
        ratios = torch.stack(ctx.gate_ratios).tolist()  # (L, E)
        keeps = torch.stack(ctx.gate_keeps).tolist()
        for layer, (rho, keep) in enumerate(zip(ratios, keeps, strict=True)):
            decisions = zip(blocks, rho, keep, strict=True)
            entries = [{"block": blk, "rho": r, "gated_off": not k} for blk, r, k in decisions]
            out.append({"step": step, "layer": layer, "entries": entries})
    return out
