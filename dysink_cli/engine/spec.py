"""LoopSpec: the block loop's settings, resolved from a RenderConfig or a parity fixture."""

from __future__ import annotations

from dataclasses import dataclass

from dysink_cli.config import RenderConfig
from dysink_cli.engine.schedule import denoising_timesteps


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

    @classmethod
    def from_config(cls, cfg: RenderConfig) -> LoopSpec:
        eng, ds = cfg.engine, cfg.dysink
        fpb = eng.frames_per_block
        capacity = {
            "window": eng.window_frames,
            "static-sink": eng.window_frames,
            "dysink": eng.window_frames + fpb * ds.top_k,
            "rolling-sink": eng.horizon_frames,
        }[eng.policy]
        steps = denoising_timesteps(cfg.sampler.steps, cfg.sampler.shift, cfg.sampler.warp)
        return cls(
            policy=eng.policy,
            frames_per_block=fpb,
            window_frames=eng.horizon_frames if eng.policy == "rolling-sink" else eng.window_frames,
            sink_frames=eng.sink_frames if eng.policy in ("static-sink", "dysink") else 0,
            capacity_frames=capacity,
            horizon_frames=eng.horizon_frames,
            timesteps=tuple(steps.tolist()),
            shift=cfg.sampler.shift,
            context_timestep=float(cfg.sampler.context_noise),
            top_k=ds.top_k,
            dedup_threshold=ds.dedup_threshold,
            gate_rule=ds.gate,
            gate_threshold=ds.gate_threshold,
            query_blocks=ds.query_blocks or max(1, eng.window_frames // fpb),
            exclusion=ds.exclusion,
            retrieved_bf16_roundtrip=ds.retrieved_bf16_roundtrip,
            zero_cache_on_switch=eng.policy != "static-sink",
            rope_mode=cfg.rope.mode,
            max_distance_frames=cfg.rope.max_distance,
        )
