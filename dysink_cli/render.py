"""render(job, on_event): the only place that wires text encoder -> block generator -> streaming
VAE decode -> ffmpeg. Every finished block is decoded with one persistent decoder state and
written at once, so memory stays flat and a killed render leaves a playable file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dysink_cli.engine.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.engine.events import BlockDone, Event, Finished, Note, PromptSwitch, RenderStarted
from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.engine.spec import LoopSpec
from dysink_cli.errors import GpuError, OutputError
from dysink_cli.io.ffmpeg import FfmpegSink
from dysink_cli.job import RenderJob, RenderStats
from dysink_cli.model.attention import resolve_backend
from dysink_cli.models import Models, encode_prompts, load_models
from dysink_cli.rope_setup import render_rope
from dysink_cli.stats import MemoryProbe, StageTimer
from dysink_cli.timeline import Timeline, plan_frames

EventSink = Callable[[Event], None]
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; 'cuda' without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GpuError("--device cuda was asked for but torch sees no CUDA GPU", "use --device cpu or auto")
    return device


def compute_dtype(name: str, device: torch.device) -> torch.dtype:
    """bf16 (the checkpoints' policy) on GPU; CPU always runs float32."""
    return DTYPES[name] if device.type == "cuda" else torch.float32


def to_uint8(frames: Tensor) -> Tensor:
    """(T, 3, H, W) in [-1, 1] -> (T, H, W, 3) uint8, rounded, on the CPU."""
    pixels = ((frames.float().clamp(-1, 1) * 0.5 + 0.5) * 255).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).contiguous().cpu()


@dataclass
class Decoder:
    """Owns the streaming VAE decode state; `shared` descriptors reuse the streamed frames."""

    vae: Any
    state: Any
    pending: Tensor | None = None

    def stream(self, latents: Tensor) -> Tensor:
        if self.pending is not None:
            frames, self.pending = self.pending, None
            return frames
        frames, self.state = self.vae.decode_chunk(latents, self.state)
        return frames


def make_describer(models: Models, decoder: Decoder, mode: str, timer: StageTimer) -> Callable[[Tensor], Tensor]:
    """Block latents -> L2-normalised PE-Core descriptor (standalone decode, or the streamed frames)."""
    assert models.pe is not None

    def describe(latents: Tensor) -> Tensor:
        with timer.stage("describe"):
            if mode == "shared":
                decoder.pending = decoder.stream(latents)
                frames = decoder.pending
            else:
                frames = models.vae.decode(latents)
            return describe_frames(frames_for_descriptor(frames)[0], models.pe)

    return describe


def render(job: RenderJob, on_event: EventSink, *, models: Models | None = None,
           embeds: dict[str, Tensor] | None = None, sink_factory: Callable[..., Any] = FfmpegSink) -> RenderStats:
    """Render one video (see the module docstring). Raises DysinkError subclasses on user errors.

    `models`, `embeds` and `sink_factory` replace the loaded networks, the text encoder's output
    and ffmpeg (the GPU benchmark injects random full-size weights and a NullSink).
    """
    cfg = job.config
    started = time.perf_counter()
    device = resolve_device(job.device)
    dtype = compute_dtype(cfg.model.dtype, device)
    plan = plan_frames(job.seconds, cfg.output.fps, cfg.engine.frames_per_block)
    switches = Timeline(segments=job.segments, source=str(job.output)).switch_blocks(plan)
    _preflight_output(job)
    if cfg.model.name == "tiny":
        on_event(Note("using the built-in demo model with untrained weights (noise-like video); "
                      "point --weights at a folder of real checkpoints for real videos"))
    on_event(Note(f"{plan.describe()}"))
    for sw in switches[1:]:
        on_event(PromptSwitch(sw.segment, sw.block, sw.requested_s, sw.effective_s, job.segments[sw.segment].prompt))

    if embeds is None:
        embeds = encode_prompts(cfg, cfg.model.weights, [s.prompt for s in job.segments], device, dtype)
    if models is None:
        models = load_models(cfg, cfg.model.weights, device, dtype)
    dit = models.dit
    text_kv = {p: dit.encode_text(e.to(device)) for p, e in embeds.items()}
    latent_hw = (cfg.output.height // models.vae.cfg.spatial_stride, cfg.output.width // models.vae.cfg.spatial_stride)
    timer, probe = StageTimer(device), MemoryProbe(device)
    decoder = Decoder(models.vae, models.vae.decoder_state())
    spec = LoopSpec.from_config(cfg)
    describe = make_describer(models, decoder, cfg.dysink.descriptors, timer) if spec.uses_memory else None
    gen = BlockGenerator(dit, spec, SeededNoise(job.seed, tiled=cfg.engine.noise == "tiled"), latent_hw,
                         device=device, dtype=dtype, backend=resolve_backend(cfg.model.attention, device),
                         rope=render_rope(cfg, dit.cfg, job.seed), describe=describe,
                         max_bank_entries=cfg.bank.max_entries, timer=timer)
    gen.set_prompt(text_kv[job.segments[0].prompt])
    switch_at = {sw.block: sw for sw in switches[1:]}

    on_event(RenderStarted(str(job.output), plan.blocks, plan.latent_frames, plan.video_frames,
                           plan.fps, plan.duration_s))
    log = open(job.log_json, "w") if job.log_json else None  # noqa: SIM115 - closed below
    try:
        with sink_factory(job.output, cfg.output.width, cfg.output.height, cfg.output.fps, crf=cfg.output.crf,
                        lossless=job.lossless, overwrite=job.overwrite) as sink:
            for b in range(plan.blocks):
                if b in switch_at:
                    with timer.stage("switch"):
                        gen.switch_prompt(text_kv[job.segments[switch_at[b].segment].prompt])
                out = gen.next_block()
                with timer.stage("decode"):
                    frames = decoder.stream(out.latents)
                with timer.stage("write"):
                    sink.write(to_uint8(frames[0]))
                stats = block_stats(out.record, timer.pop(), probe, sink.frames_written, started, plan.fps)
                if log:
                    log.write(json.dumps(stats) + "\n")
                    log.flush()
                on_event(BlockDone(b, plan.blocks, sink.frames_written, sink.frames_written / plan.fps, stats))
    finally:
        if log:
            log.close()
    wall = time.perf_counter() - started
    result = RenderStats(job.output, sink.frames_written, plan.blocks, wall, sink.frames_written / wall,
                         probe.peak_gpu_gb(), probe.peak_rss_gb())
    on_event(Finished(str(job.output), sink.frames_written, sink.frames_written / plan.fps, wall,
                      {"peak_gpu_gb": result.peak_gpu_gb, "peak_rss_gb": result.peak_rss_gb}))
    return result


def _preflight_output(job: RenderJob) -> None:
    out = Path(job.output)
    if out.exists() and not job.overwrite:
        raise OutputError(f"{out} already exists", "pass --overwrite or pick another name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"folder {parent} does not exist", "create it or pick another output path")


def block_stats(record: dict[str, Any], ms: dict[str, float], probe: MemoryProbe, frames_written: int,
                started: float, fps: int) -> dict[str, Any]:
    """The per-block JSON record of --log-json (see engine/events.py BlockDone)."""
    elapsed = time.perf_counter() - started
    retrieval = record.get("retrieval") or {}
    closures = sum(e["gated_off"] for g in record.get("gate", []) for e in g["entries"])
    return {
        "block": record["block"],
        "start_frame": record["start_frame"],
        "time_s": round(elapsed, 4),
        "frames_written": frames_written,
        "video_s": frames_written / fps,
        "window_frames": record.get("effective_local_attn_frames"),
        "bank_size": record.get("bank_size_after_block", 0),
        "retrieved_frames": retrieval.get("retrieved_frames", []),
        "gate_closures": closures,
        "dedup_added": (record.get("dedup") or {}).get("added_to_bank"),
        "gpu_mem_gb": probe.gpu_gb(),
        "rss_gb": probe.rss_gb(),
        "fps": frames_written / elapsed if elapsed > 0 else 0.0,
        "ms": {k: round(v, 2) for k, v in ms.items()},
    }
