"""The render settings: one frozen dataclass per TOML table, each checking its values.

Every check lives in a section's `__post_init__`, so a bad value fails before any model loads, with
one message naming the key, the value and the valid range. Imports errors and model.config (both
torch-free) only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from dysink_cli.errors import ConfigError
from dysink_cli.model.config import PE_CORE_CONFIGS

MODEL_NAMES = ("tiny", "toy", "wan-1.3b")
DECODERS = ("wan", "taehv")
DTYPES = ("bfloat16", "float16", "float32")
ATTENTION = ("auto", "sdpa", "cudnn", "flash")  # "auto" + model.attention.BACKENDS (a test keeps them equal)
BANK_FORMATS = ("same", "fp8")  # engine.memory.store.KV_FORMATS (a test keeps them equal)
POLICIES = ("window", "static-sink", "dysink", "rolling-sink")
GATE_RULES = ("per-entry", "max", "off")
MAX_SIDE = 8192
NUM_TRAIN_TIMESTEPS = 1000


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{key} = {value!r} is not one of {', '.join(allowed)}", f"set {key} to one of them"
        )


def _in_range(
    key: str,
    value: float,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    hint: str = "",
) -> None:
    """`value` is finite and inside [lo, hi] (open ends where asked); else one ConfigError naming all."""
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if math.isfinite(value) and not too_low and not too_high:
        return
    if lo is not None and hi is not None:
        span = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    elif lo is not None:
        span = f"{'>' if lo_open else '>='} {lo:g}"
    else:
        span = f"{'<' if hi_open else '<='} {hi:g}"
    what = (
        f"not {span}" if math.isfinite(value) else f"not a finite number (valid: {span.removeprefix('in ')})"
    )
    raise ConfigError(f"{key} = {value!r} is {what}", hint or f"set {key} {span}")


@dataclass(frozen=True)
class ModelSection:
    """Which networks to run and where their weights are."""

    name: str = "tiny"  # "tiny" (embedded demo), "toy" (toy world) or "wan-1.3b"
    weights: str = ""  # folder with the weight files; "" = embedded tiny weights
    dtype: str = "bfloat16"  # compute dtype on GPU; CPU always runs float32
    attention: str = "auto"  # "auto" | "sdpa" | "cudnn" | "flash"
    compile: bool = True  # CUDA: fuse the DiT block's elementwise chains with torch.compile
    cuda_graphs: bool = True  # CUDA: replay the block loop's repeated DiT calls from CUDA graphs
    overlap_decode: bool = False  # CUDA: decode block n on a side stream beside block n+1 (no gain measured)
    pe_core: str = "PE-Core-S16-384"
    decoder: str = "wan"  # output frames: "wan" (the Wan VAE) | "taehv" (TAEHV tiny decoder, weights folder)
    fp8: bool = False  # the DiT blocks' linears in FP8 e4m3 (row-wise scales; torch._scaled_mm on CUDA)

    def __post_init__(self) -> None:
        _choice("model.name", self.name, MODEL_NAMES)
        _choice("model.decoder", self.decoder, DECODERS)
        if self.decoder == "taehv" and self.name != "wan-1.3b":
            raise ConfigError(
                f"model.decoder = taehv needs a weights folder with taew2_1 (model.name is {self.name!r})",
                "use the Wan VAE (model.decoder = wan) with the embedded models",
            )
        _choice("model.dtype", self.dtype, DTYPES)
        _choice("model.attention", self.attention, ATTENTION)
        _choice("model.pe_core", self.pe_core, tuple(PE_CORE_CONFIGS))


@dataclass(frozen=True)
class EngineSection:
    """Cache policy and block geometry."""

    policy: str = "dysink"
    window_frames: int = 9  # local attention window in latent frames (includes sink frames)
    sink_frames: int = 0  # static sink (LongLive)
    frames_per_block: int = 3
    horizon_frames: int = 21  # rolling-sink training horizon
    noise: str = "independent"  # "independent" | "tiled" (Rolling Sink CLI convention)

    def __post_init__(self) -> None:
        _choice("engine.policy", self.policy, POLICIES)
        _choice("engine.noise", self.noise, ("independent", "tiled"))
        _in_range("engine.frames_per_block", self.frames_per_block, 1, hint="use 3 for Wan models")
        if self.window_frames < self.frames_per_block:
            raise ConfigError(
                f"engine.window_frames = {self.window_frames} is smaller than a block "
                f"({self.frames_per_block} frames)",
                "set engine.window_frames to at least one block",
            )
        if self.sink_frames < 0 or self.sink_frames >= self.window_frames:
            raise ConfigError(
                f"engine.sink_frames = {self.sink_frames} is not in [0, {self.window_frames}) "
                "(below engine.window_frames)",
                "the sink counts toward the window; lower it or widen the window",
            )
        _in_range("engine.horizon_frames", self.horizon_frames, 1, hint="Self-Forcing's horizon is 21")
        if self.policy == "rolling-sink" and (
            self.horizon_frames % self.frames_per_block or self.horizon_frames <= 2 * self.frames_per_block
        ):
            raise ConfigError(
                f"engine.horizon_frames = {self.horizon_frames} must be a multiple of "
                f"{self.frames_per_block} above {2 * self.frames_per_block}",
                "Self-Forcing's horizon is 21",
            )


@dataclass(frozen=True)
class DySinkSection:
    """Memory bank, retrieval and the sink anomaly gate (DySink section 3)."""

    top_k: int = 2
    dedup_threshold: float = 0.95  # cosine; a block is stored when its best match is <= this (>= 1: all)
    gate: str = "per-entry"
    gate_threshold: float = 0.8  # share of (batch, head) pairs; an entry above it is gated off
    descriptors: str = "standalone"  # "standalone" (reference) | "shared" (from the streamed frames)
    descriptor_decoder: str = "wan"  # standalone descriptors decoded by "wan" (reference) | "taehv"
    query_blocks: int = 0  # 0 = window_frames // frames_per_block (reference)
    exclusion: str = "reference"  # "reference" (one block wider than the window) | "window"
    retrieved_bf16_roundtrip: bool = True

    def __post_init__(self) -> None:
        _choice("dysink.gate", self.gate, GATE_RULES)
        _choice("dysink.descriptors", self.descriptors, ("standalone", "shared"))
        _choice("dysink.descriptor_decoder", self.descriptor_decoder, DECODERS)
        _choice("dysink.exclusion", self.exclusion, ("reference", "window"))
        _in_range("dysink.top_k", self.top_k, 0, hint="use 2 (the release)")
        _in_range(
            "dysink.dedup_threshold",
            self.dedup_threshold,
            0,
            2,
            hint="use 0.95; 1 or more stores every block",
        )
        _in_range("dysink.gate_threshold", self.gate_threshold, 0, 1, hint="use 0.8 (per-entry) or 0.5 (max)")
        _in_range("dysink.query_blocks", self.query_blocks, 0, hint="use 0 (the window's blocks)")


@dataclass(frozen=True)
class BankSection:
    """Where memory-bank entries live (GPU cache, pinned RAM, disk)."""

    gpu_entries: int = 1  # 20 GB peak with every block stored (4: 23 GB, 2 % faster; bench/RESULTS.md)
    ram_gb: float = 8.0
    disk_gb: float = 64.0
    max_entries: int = 0  # 0 = unlimited
    dtype: str = "same"  # "same" | "fp8"

    def __post_init__(self) -> None:
        for key in ("gpu_entries", "ram_gb", "max_entries"):
            _in_range(f"bank.{key}", getattr(self, key), 0, hint=f"set bank.{key} to 0 or more")
        _in_range("bank.disk_gb", self.disk_gb, 0, lo_open=True, hint="set bank.disk_gb above 0")
        _choice("bank.dtype", self.dtype, BANK_FORMATS)


@dataclass(frozen=True)
class RopeSection:
    """Positions: absolute (reference) or relative with a clamp; LoL per-head jitter."""

    mode: str = "absolute"
    max_distance: int = 240
    jitter: float = 0.0  # LoL sigma; 0 = off
    jitter_heads: float = 1.0
    jitter_axes: str = "t"
    jitter_scope: str = "shared"

    def __post_init__(self) -> None:
        _choice("rope.mode", self.mode, ("absolute", "relative"))
        _choice("rope.jitter_scope", self.jitter_scope, ("shared", "per_layer"))
        if not self.jitter_axes or set(self.jitter_axes) - set("thw"):
            raise ConfigError(
                f"rope.jitter_axes = {self.jitter_axes!r} is not made of t, h, w", 'use "t" (LoL)'
            )
        _in_range("rope.max_distance", self.max_distance, 0, hint="use 240 latent frames")
        _in_range("rope.jitter_heads", self.jitter_heads, 0, 1, hint="a fraction: 1 = all heads")
        _in_range("rope.jitter", self.jitter, 0, 1, hi_open=True, hint="LoL uses 0.8; 0 is off")


@dataclass(frozen=True)
class SamplerSection:
    """Few-step flow-matching schedule."""

    steps: tuple[int, ...] = (1000, 750, 500, 250)
    shift: float = 5.0
    warp: bool = True
    context_noise: int = 0

    def __post_init__(self) -> None:
        top = NUM_TRAIN_TIMESTEPS
        hint = f"use e.g. [1000, 750, 500, 250]: each in 1..{top}, strictly decreasing"
        if not self.steps:
            raise ConfigError("sampler.steps = [] is empty", hint)
        descending = all(a > b for a, b in zip(self.steps, self.steps[1:], strict=False))
        if not descending or not all(1 <= s <= top for s in self.steps):
            raise ConfigError(
                f"sampler.steps = {list(self.steps)} is not strictly decreasing in 1..{top}", hint
            )
        _in_range("sampler.shift", self.shift, 0, lo_open=True, hint="Wan's few-step models use 5.0")
        _in_range("sampler.context_noise", self.context_noise, 0, top, hint="use 0 (a clean commit)")


@dataclass(frozen=True)
class OutputSection:
    """Video geometry and encoding (the container follows the output's suffix)."""

    width: int = 832
    height: int = 480
    fps: int = 16
    crf: int = 18
    checkpoint_every_blocks: int = 20
    checkpoint_overhead: float = 0.05  # periodic checkpoints take at most this share of the time

    def __post_init__(self) -> None:
        for key in ("width", "height"):
            value = getattr(self, key)
            if value <= 0 or value % 16 or value > MAX_SIDE:
                raise ConfigError(
                    f"output.{key} = {value} is not a positive multiple of 16 up to {MAX_SIDE}",
                    "use 832x480 for Wan2.1-1.3B",
                )
        _in_range("output.fps", self.fps, 1, 240, hint="Wan renders at 16 fps")
        _in_range("output.crf", self.crf, 0, 51, hint="18 is visually lossless, 23 is x264's default")
        _in_range("output.checkpoint_every_blocks", self.checkpoint_every_blocks, 1, hint="use 20")
        _in_range(
            "output.checkpoint_overhead",
            self.checkpoint_overhead,
            0,
            1,
            hi_open=True,
            hint="use 0.05 (5 % of the render time), or 0 to checkpoint every checkpoint_every_blocks",
        )


@dataclass(frozen=True)
class FilesSection:
    """Which file in the weights folder plays which role; "" = found by its standard name.

    Paths are relative to the weights folder. LoRAs are merged in the order given. (Read from
    `[checkpoints]` too, the table's old name, for one release.)
    """

    generator: str = ""
    loras: tuple[str, ...] = ()
    use_ema: bool = True
    vae: str = ""
    t5: str = ""
    tokenizer: str = ""
    pe: str = ""
    taehv: str = ""


@dataclass(frozen=True)
class RenderConfig:
    """Everything a render needs besides the prompt(s)."""

    description: str = ""
    model: ModelSection = field(default_factory=ModelSection)
    engine: EngineSection = field(default_factory=EngineSection)
    dysink: DySinkSection = field(default_factory=DySinkSection)
    bank: BankSection = field(default_factory=BankSection)
    rope: RopeSection = field(default_factory=RopeSection)
    sampler: SamplerSection = field(default_factory=SamplerSection)
    output: OutputSection = field(default_factory=OutputSection)
    files: FilesSection = field(default_factory=FilesSection)

    def __post_init__(self) -> None:
        if self.dysink.descriptor_decoder == "taehv" and self.model.name != "wan-1.3b":
            raise ConfigError(
                "dysink.descriptor_decoder = taehv needs a weights folder with taew2_1 "
                f"(model.name is {self.model.name!r})",
                "keep dysink.descriptor_decoder = wan with the embedded models",
            )
