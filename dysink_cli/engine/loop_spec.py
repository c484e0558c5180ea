"""LoopSpec: the block loop's settings in frames (render/assemble.py builds one from the user's
config, parity/ from a fixture). Imports nothing of dysink."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopSpec:
    """Everything the BlockGenerator needs to know about the policy (frames, not tokens)."""

    policy: str = "window"  # window | static-sink | dysink | rolling-sink
    frames_per_block: int = 3
    window_frames: int = 12
    sink_frames: int = 0
    capacity_frames: int = 12
    horizon_frames: int = 21
    timesteps: tuple[float, ...] = (1000.0, 937.5, 833.3333129882812, 625.0)
    shift: float = 5.0
    context_timestep: float = 0.0
    top_k: int = 2
    dedup_threshold: float = 0.95
    gate_rule: str = "per-entry"
    gate_threshold: float = 0.8
    query_blocks: int = 3
    exclusion: str = "reference"
    retrieved_bf16_roundtrip: bool = True
    zero_cache_on_switch: bool = True  # DySink/LongLive with global_sink = false
    rope_mode: str = "absolute"  # "absolute" (reference) | "relative" (clamp sink/memory distances)
    max_distance_frames: int = 240

    @property
    def uses_memory(self) -> bool:
        return self.policy == "dysink"
