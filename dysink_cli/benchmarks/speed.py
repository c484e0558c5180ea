"""`dysink bench speed`: the real render() with a NullSink, per configuration, measured the same way.

(1) configurations: presets x descriptor modes, flags over --set; (2) networks: random weights at
full size, or what the render loads (demo, weights folder); (3) the render, its BlockDone records
and its warm-up Note; (4) medians of the steady-state blocks after the warm-up blocks; (5) on CUDA
the DiT floor at measured rates; (6) x264 measured apart. Returns dataclasses, never prints.
Imports config, errors, io, model and render.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dysink_cli.benchmarks.agreement import configured_agreement
from dysink_cli.benchmarks.encode import encode_fps
from dysink_cli.benchmarks.floor import block_flops, block_keys, floor_ms, measure_rates, tokens_per_frame
from dysink_cli.benchmarks.networks import FULL_SIZE, PROMPT, Loaded, NetworkCache, needs_taehv
from dysink_cli.benchmarks.results import Floor, SpeedResult, commit_id, pinned_figures, steady_stats
from dysink_cli.config import RenderConfig, resolve_config, with_changes
from dysink_cli.errors import ConfigError, GpuError
from dysink_cli.io.ffmpeg import NullSink
from dysink_cli.model.attention import resolve_backend
from dysink_cli.render.device import resolve_device
from dysink_cli.render.events import BlockDone, Event, Note
from dysink_cli.render.job import RenderJob, RenderStats
from dysink_cli.render.networks import Networks
from dysink_cli.render.session import render
from dysink_cli.timeline import Segment

DIT_STAGES = ("denoise", "clean_pass")
WARMED_UP = re.compile(r"warmed up .* in ([0-9.]+) s")


@dataclass(frozen=True)
class SpeedRequest:
    """What the user asked for (None / empty: the preset's own setting)."""

    presets: tuple[str, ...] = ("dysink",)
    decoder: str | None = None
    blocks: int = 12
    warmup: int = 3
    weights: Path | None = None  # None: random weights at full size (the demo for tiny/toy)
    overrides: tuple[str, ...] = ()
    descriptors: tuple[str, ...] = ()
    device: str = "auto"
    measure_apart: bool = True  # the DiT floor (CUDA) and x264; off inside a profiler


@dataclass(frozen=True)
class SpeedCase:
    """One configuration to measure."""

    preset: str
    config: RenderConfig

    @property
    def descriptors(self) -> str:
        """DySink's descriptor mode ("standalone-taehv" when TAEHV decodes them), else "none"."""
        if self.config.engine.policy != "dysink":
            return "none"
        mode, decoder = self.config.dysink.descriptors, self.config.dysink.descriptor_decoder
        return f"{mode}-taehv" if mode == "standalone" and decoder == "taehv" else mode

    @property
    def stored(self) -> str:
        """'all' when every block goes into the bank (dedup_threshold >= 1), 'dedup' else, 'none'
        for policies without a bank."""
        if self.config.engine.policy != "dysink":
            return "none"
        return "all" if self.config.dysink.dedup_threshold >= 1 else "dedup"


def seconds_for(blocks: int, cfg: RenderConfig) -> float:
    """The video length whose frame plan is exactly `blocks` blocks (4 T - 3 frames, T latents)."""
    return (4 * cfg.engine.frames_per_block * blocks - 3) / cfg.output.fps


def plan_cases(request: SpeedRequest) -> list[SpeedCase]:
    """Each preset, once per asked descriptor mode when it runs DySink; flags over --set."""
    if request.blocks < 1 or request.warmup < 0:
        raise ConfigError(
            f"--blocks {request.blocks} --warmup {request.warmup}: need a block and no negative warm-up",
            "use e.g. --blocks 12 --warmup 3",
        )
    if request.warmup >= request.blocks:
        raise ConfigError(
            f"--warmup {request.warmup} leaves no steady block out of --blocks {request.blocks}",
            "pass more --blocks than --warmup blocks",
        )
    flags = [f'model.decoder="{request.decoder}"'] if request.decoder else []
    cases = []
    for preset in dict.fromkeys(request.presets):
        base = resolve_config(preset, (*request.overrides, *flags))
        if request.weights is not None:
            if base.model.name != FULL_SIZE:
                raise ConfigError(
                    f"--preset {preset} runs the embedded {base.model.name} model and takes no --weights",
                    "drop --weights, or pick a full-size preset (dysink, longlive, self-forcing)",
                )
            base = with_changes(base, "model", weights=str(request.weights))
        modes = request.descriptors if base.engine.policy == "dysink" and request.descriptors else ("",)
        for mode in dict.fromkeys(modes):
            cfg = with_changes(base, "dysink", descriptors=mode) if mode else base
            cases.append(SpeedCase(preset, cfg))
    return cases


class SpeedBench:
    """Runs the cases of one request on one device, reusing networks between them."""

    def __init__(self, request: SpeedRequest, networks: NetworkCache | None = None) -> None:
        """`networks`: a cache shared with other benches (bench/bench.py), else one of its own."""
        self.request = request
        self.cases = plan_cases(request)
        self.device = resolve_device(request.device)
        if self.device.type != "cuda":
            full = [c.preset for c in self.cases if c.config.model.name == FULL_SIZE]
            if full:
                raise GpuError(
                    f"--preset {full[0]} runs the full-size Wan2.1-1.3B and needs a CUDA GPU "
                    f"(device here: {self.device.type})",
                    "use --preset tiny to try it on a CPU",
                )
        taehv = any(needs_taehv(c.config) for c in self.cases)
        self.networks = networks or NetworkCache(self.device, request.weights is None, taehv)
        self.device_name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"
        self._encode: dict[tuple, float | None] = {}

    def run(self, case: SpeedCase) -> SpeedResult:
        """Render `request.blocks` blocks of `case` into a NullSink and measure them."""
        cfg, req = case.config, self.request
        loaded = self.networks.get(cfg)
        apart = req.measure_apart
        floor = self._floor(case, loaded.networks) if apart and self.device.type == "cuda" else None
        notes: list[str] = []
        records: list[dict[str, Any]] = []

        def on_event(event: Event) -> None:
            if isinstance(event, BlockDone):
                records.append(event.stats)
            elif isinstance(event, Note):
                notes.append(event.message)

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        with tempfile.TemporaryDirectory(prefix="dysink-bench-") as tmp:
            job = RenderJob(
                segments=(Segment(0.0, PROMPT),),
                seconds=seconds_for(req.blocks, cfg),
                output=Path(tmp) / "bench.mp4",
                config=cfg,
                seed=1,
                device=str(self.device),
                overwrite=True,
            )
            assert job.plan.blocks == req.blocks, (job.plan.blocks, req.blocks)
            start = time.perf_counter()
            stats = render(
                job, on_event, networks=loaded.networks, embeds=loaded.embeds, sink_factory=NullSink
            )
            wall = time.perf_counter() - start
        result = self._result(case, records, notes, stats, wall, loaded, floor)
        if self.device.type == "cuda":  # pinned host memory: what RSS holds beside the bank's RAM tier
            result.extra |= pinned_figures(torch.cuda.host_memory_stats())
        if case.descriptors not in ("none", "standalone"):  # not the reference decode: how far off?
            text_kv = loaded.networks.dit.encode_text(loaded.embeds[PROMPT].to(self.device))
            agreement = configured_agreement(cfg, loaded.networks, text_kv, req.blocks, 1, self.device)
            result.extra["retrieval_agreement"] = agreement
        return result

    def _result(
        self,
        case: SpeedCase,
        records: list[dict[str, Any]],
        notes: list[str],
        stats: RenderStats,
        wall: float,
        loaded: Loaded,
        floor: Floor | None,
    ) -> SpeedResult:
        cfg, warmup = case.config, self.request.warmup
        steady = steady_stats(records, warmup)
        dit_ms = sum(steady.stage_ms.get(k, 0.0) for k in DIT_STAGES)
        warm = [float(m.group(1)) for m in map(WARMED_UP.search, notes) if m]
        size = (cfg.output.width, cfg.output.height)
        apart = self.request.measure_apart
        encode = self.encode(*size, cfg.output.fps, cfg.output.crf) if apart else None
        return SpeedResult(
            date=dt.date.today().isoformat(),
            device=self.device_name,
            commit=commit_id(),
            preset=case.preset,
            descriptors=case.descriptors,
            decoder=cfg.model.decoder,
            stored=case.stored,
            weights=loaded.networks.description,
            resolution=f"{size[0]}x{size[1]}",
            e2e_fps=steady.frames_per_block / (steady.block_ms / 1000),
            dit_fps=steady.frames_per_block / (dit_ms / 1000) if dit_ms else float("nan"),
            ttff_s=records[0]["first_frame_s"],
            first_block_ms=dict(records[0]["ms"]),
            peak_gpu_gb=stats.peak_gpu_gb if self.device.type == "cuda" else None,
            peak_rss_gb=stats.peak_rss_gb,
            ms_per_block={"total": steady.block_ms, **steady.stage_ms},
            blocks=len(records),
            warmup_blocks=warmup,
            frames=records[-1]["frames_written"],
            wall_s=wall,
            load_s=loaded.load_s,
            warmup_s=warm[-1] if warm else None,
            warmup_blocks_s=records[warmup - 1]["since_loaded_s"] if warmup else 0.0,
            encode_fps=encode,
            floor=floor,
            fp8=cfg.model.fp8,
        )

    def _floor(self, case: SpeedCase, nets: Networks) -> Floor:
        cfg, dit = case.config, nets.dit.cfg
        stride = nets.vae.cfg.spatial_stride
        frames = nets.vae.cfg.temporal_stride * cfg.engine.frames_per_block  # video frames per block
        per_frame = tokens_per_frame(dit, stride, cfg.output.width, cfg.output.height)
        keys = block_keys(cfg)
        fpb = cfg.engine.frames_per_block
        backend = resolve_backend(cfg.model.attention, self.device)
        with torch.cuda.device(self.device):
            rates = measure_rates(dit, fpb * per_frame, keys[0] * per_frame, cfg.model.dtype, backend)
        flops = block_flops(cfg, dit, stride)
        ms = floor_ms(flops, rates)
        return Floor(
            ms, frames / (ms / 1000), flops.total / 1e12, keys, rates.matmul_tflops, rates.attention_tflops
        )

    def encode(self, width: int, height: int, fps: int, crf: int) -> float | None:
        """x264 frames per second at this size (measured once per size; None without ffmpeg)."""
        key = (width, height, fps, crf)
        if key not in self._encode:
            self._encode[key] = encode_fps(width, height, fps, crf)
        return self._encode[key]
