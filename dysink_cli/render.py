"""render(job, on_event): the only place that wires text encoder -> block generator -> streaming
VAE decode -> ffmpeg. Every finished block is decoded with one persistent decoder state and
written at once, so memory stays flat and a killed render leaves a playable file. The loop state
is checkpointed into `OUT.dysink/` every few blocks and on Ctrl-C; re-running the same job
continues from there (resume.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dysink_cli.config import RenderConfig, build_config, config_to_dict
from dysink_cli.engine.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.engine.events import BlockDone, Event, Finished, Note, PromptSwitch, RenderStarted
from dysink_cli.engine.generator import BlockGenerator, generator_state, restore_generator
from dysink_cli.engine.memory_bank import MemoryBank
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.engine.spec import LoopSpec
from dysink_cli.errors import GpuError, OutputError, ResumeError
from dysink_cli.io.ffmpeg import FfmpegSink, ffmpeg_exe
from dysink_cli.io.handoff import FrameHandoff
from dysink_cli.job import RenderJob, RenderStats, Segment
from dysink_cli.model.attention import resolve_backend
from dysink_cli.model.vae import DecoderState
from dysink_cli.models import Models, encode_prompts, load_models
from dysink_cli.render_parts import Decoder, InterruptFlag, block_stats, make_describer
from dysink_cli.resume import (
    Checkpoint,
    checkpoint_due,
    join_parts,
    load_checkpoint,
    open_work_dir,
    part_path,
    remove_work_dir,
    save_checkpoint,
)
from dysink_cli.rope_setup import render_rope
from dysink_cli.stats import MemoryProbe, StageTimer
from dysink_cli.timeline import Timeline, plan_frames
from dysink_cli.workdir import work_dir_for

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


def job_fingerprint(job: RenderJob) -> dict[str, Any]:
    """What must match for a work folder to continue this job (also enough to rebuild it)."""
    return {
        "segments": [[s.at_s, s.prompt] for s in job.segments],
        "seconds": job.seconds,
        "seed": job.seed,
        "config": config_to_dict(job.config),
        "lossless": job.lossless,
    }


def job_from_checkpoint(output: Path, device: str = "auto", log_json: Path | None = None) -> RenderJob:
    """The RenderJob recorded in OUT.dysink/ (for `dysink resume OUT`)."""
    work = work_dir_for(output)
    meta_path = work / "checkpoint.json"
    if not meta_path.is_file():
        raise ResumeError(f"no checkpoint to resume in {work}", "render it with dysink render instead")
    try:
        fp = json.loads(meta_path.read_text())["job"]
        return RenderJob(
            segments=tuple(Segment(float(a), p) for a, p in fp["segments"]),
            seconds=fp["seconds"],
            output=Path(output),
            config=build_config(fp["config"]),
            seed=fp["seed"],
            device=device,
            lossless=fp["lossless"],
            log_json=log_json,
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ResumeError(
            f"checkpoint in {work} is unreadable: {err}", "start again with --overwrite"
        ) from None


def render(
    job: RenderJob,
    on_event: EventSink,
    *,
    models: Models | None = None,
    embeds: dict[str, Tensor] | None = None,
    sink_factory: Callable[..., Any] = FfmpegSink,
) -> RenderStats:
    """Render (or continue) one video. Raises DysinkError subclasses on user errors.

    `models`, `embeds` and `sink_factory` replace the loaded networks, the text encoder's output
    and ffmpeg (the GPU benchmark injects random full-size weights and a NullSink).
    """
    session = RenderSession(job, on_event, sink_factory)
    session.prepare(models, embeds)
    return session.run()


class RenderSession:
    """One video's render: owns the generator, decoder state, sink, work folder and checkpoints."""

    def __init__(self, job: RenderJob, on_event: EventSink, sink_factory: Callable[..., Any]) -> None:
        self.job, self.emit, self.sink_factory = job, on_event, sink_factory
        self.cfg: RenderConfig = job.config
        self.started = time.perf_counter()
        self.device = resolve_device(job.device)
        self.dtype = compute_dtype(self.cfg.model.dtype, self.device)
        if self.device.type == "cuda":  # fixed conv shapes per render: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        self.plan = plan_frames(job.seconds, self.cfg.output.fps, self.cfg.engine.frames_per_block)
        self.switches = Timeline(segments=job.segments, source=str(job.output)).switch_blocks(self.plan)
        self.checkpoint = self._find_checkpoint()
        self.last_save: tuple[float, float] | None = None  # (seconds it took, perf_counter at its end)
        self.work = open_work_dir(job.output)
        self.timer, self.probe = StageTimer(self.device), MemoryProbe(self.device)

    def _find_checkpoint(self) -> Checkpoint | None:
        out, work = Path(self.job.output), work_dir_for(self.job.output)
        if self.job.overwrite:
            remove_work_dir(work)
            return None
        checkpoint = load_checkpoint(work) if work.is_dir() else None
        if checkpoint is None:
            if out.exists():
                raise OutputError(f"{out} already exists", "pass --overwrite or pick another name")
            if not (out.parent if str(out.parent) else Path(".")).is_dir():
                raise OutputError(
                    f"folder {out.parent} does not exist", "create it or pick another output path"
                )
            return None
        if checkpoint.meta.get("job") != json.loads(json.dumps(job_fingerprint(self.job))):
            raise ResumeError(
                f"{work} holds a different render's checkpoint",
                "run the same command as before, or pass --overwrite to start again",
            )
        return checkpoint

    def prepare(self, models: Models | None, embeds: dict[str, Tensor] | None) -> None:
        cfg, job = self.cfg, self.job
        if cfg.model.name == "tiny":
            self.emit(
                Note(
                    "using the built-in demo model with untrained weights (noise-like video); "
                    "point --weights at a folder of real checkpoints for real videos"
                )
            )
        for sw in self.switches[1:]:
            self.emit(
                PromptSwitch(
                    sw.segment, sw.block, sw.requested_s, sw.effective_s, job.segments[sw.segment].prompt
                )
            )
        prompts = [s.prompt for s in job.segments]
        embeds = embeds or encode_prompts(cfg, cfg.model.weights, prompts, self.device, self.dtype)
        self.models = models or load_models(cfg, cfg.model.weights, self.device, self.dtype)
        dit = self.models.dit
        if self.device.type == "cuda":
            self.models.vae.use_channels_last()  # -23 % decode time (bench/RESULTS.md, step 13)
            if cfg.model.compile:
                dit.use_compiled_ops()
                self.models.vae.use_compiled_ops()
        self.text_kv = {p: dit.encode_text(e.to(self.device)) for p, e in embeds.items()}
        vae_cfg = self.models.vae.cfg
        latent_hw = (cfg.output.height // vae_cfg.spatial_stride, cfg.output.width // vae_cfg.spatial_stride)
        self.decoder = Decoder(self.models.vae, self.models.vae.decoder_state())
        # the streamed decode waits for nothing the next block needs, unless its frames are the
        # descriptor's (shared): then it runs in line
        shared = cfg.engine.policy == "dysink" and cfg.dysink.descriptors == "shared"
        overlap = self.device.type == "cuda" and cfg.model.overlap_decode and not shared
        self.decode_stream = torch.cuda.Stream(self.device) if overlap else None
        spec = LoopSpec.from_config(cfg)
        describe = (
            make_describer(self.models, self.decoder, cfg.dysink.descriptors, self.timer)
            if spec.uses_memory
            else None
        )
        self.bank = self._open_bank() if spec.uses_memory else None
        self.gen = BlockGenerator(
            dit,
            spec,
            SeededNoise(job.seed, tiled=cfg.engine.noise == "tiled"),
            latent_hw,
            device=self.device,
            dtype=self.dtype,
            backend=resolve_backend(cfg.model.attention, self.device),
            rope=render_rope(cfg, dit.cfg, job.seed),
            describe=describe,
            timer=self.timer,
            bank=self.bank,
            graphs=cfg.model.cuda_graphs,
        )
        self.segment = 0
        self.parts: list[dict[str, Any]] = [{"path": str(job.output), "frames": 0}]
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        self.gen.set_prompt(self.text_kv[job.segments[self.segment].prompt])
        if self.device.type == "cuda":
            self._warm_up(latent_hw)

    @torch.no_grad()
    def _warm_up(self, latent_hw: tuple[int, int]) -> None:
        """Compile the fused kernels and let cuDNN tune its VAE convs before the first block.

        Runs one block-sized forward into a throwaway cache and a fresh + continued decode;
        the render's own state is untouched. Counted as loading, not as time to first frame.
        """
        start = time.perf_counter()
        fpb = self.cfg.engine.frames_per_block
        z = torch.zeros(1, fpb, self.models.dit.cfg.in_dim, *latent_hw, device=self.device, dtype=self.dtype)
        scratch = self.gen.new_cache(fpb)
        self.gen.forward(z, 0.0, 0, fpb, cache=scratch)
        frames, state = self.models.vae.decode_chunk(z, self.models.vae.decoder_state())
        self.models.vae.decode_chunk(z, state)
        if self.gen.memory is not None and self.models.pe is not None:
            describe_frames(frames_for_descriptor(frames)[0], self.models.pe)  # PE-Core's kernels
            shape = scratch.k[:, :, : fpb * self.gen.tokens_per_frame].shape
            # K and V of the first bank entry reuse these two blocks (host allocator cache); both
            # are held at once, else the second allocation would only reuse the first
            pinned = [torch.empty(shape, dtype=scratch.k.dtype, pin_memory=True) for _ in range(2)]
            del pinned
            self._warm_up_merge(shape[1:])
        torch.cuda.synchronize()
        self.emit(Note(f"warmed up (kernel compile and cuDNN tuning) in {time.perf_counter() - start:.1f} s"))

    def _warm_up_merge(self, kv_shape: torch.Size) -> None:
        """Compile the gate's piece merge for every entry count (else the first blocks with memory
        would compile it mid-render)."""
        b, n, h, d = kv_shape
        out = torch.zeros(b, n, h, d, device=self.device, dtype=self.dtype)
        lse = torch.zeros(b, h, n, device=self.device)
        merge = self.models.dit.blocks[0].ops.merge
        for pieces in range(2, self.cfg.dysink.top_k + 2):
            merge([out] * pieces, [lse] * pieces, torch.ones(pieces, dtype=torch.bool, device=self.device))

    def _open_bank(self) -> MemoryBank:
        b = self.cfg.bank
        options = {
            "max_entries": b.max_entries,
            "ram_gb": b.ram_gb,
            "disk_gb": b.disk_gb,
            "gpu_entries": b.gpu_entries,
            "dtype": b.dtype,
            "device": self.device,
            "checkpoint_blocks": self.cfg.output.checkpoint_every_blocks,
        }
        work = self.work / "bank"
        if self.checkpoint is not None and self.checkpoint.meta["generator"].get("bank") is not None:
            state = dict(self.checkpoint.meta["generator"]["bank"])
            state["descriptors"] = self.checkpoint.tensors["gen.bank.descriptors"]
            return MemoryBank.from_state(state, work, **options)
        return MemoryBank(work_dir=work, **options)

    def _restore(self, checkpoint: Checkpoint) -> None:
        meta, tensors = checkpoint.meta, checkpoint.tensors
        restore_generator(
            self.gen, {k[4:]: v for k, v in tensors.items() if k.startswith("gen.")}, meta["generator"]
        )
        dec = {k[len("decoder.") :]: v for k, v in tensors.items() if k.startswith("decoder.")}
        self.decoder.state = DecoderState.from_tensors(dec, device=self.device)
        self.segment = meta["segment"]
        self.parts = [dict(p) for p in meta["parts"]]
        self.parts.append({"path": str(part_path(self.work, self.job.output, len(self.parts))), "frames": 0})
        self.emit(
            Note(
                f"resuming from block {self.gen.block} of {self.plan.blocks} "
                f"({sum(p['frames'] for p in self.parts)} frames already written)"
            )
        )

    def save(self, frames: FrameHandoff) -> None:
        """Checkpoint the state after the last finished block (frames of the part being written)."""
        if self.decode_stream is not None:
            torch.cuda.current_stream().wait_stream(self.decode_stream)  # the decoder state is done
        frames.flush()
        self.parts[-1]["frames"] = frames.sink.frames_written
        gen_tensors, gen_meta = generator_state(self.gen)
        tensors = {f"gen.{k}": v for k, v in gen_tensors.items()}
        tensors |= {f"decoder.{k}": v for k, v in self.decoder.state.to_tensors().items()}
        meta = {
            "job": job_fingerprint(self.job),
            "block": self.gen.block,
            "segment": self.segment,
            "parts": self.parts,
            "generator": gen_meta,
        }
        start = time.perf_counter()
        with self.timer.stage("checkpoint"):
            save_checkpoint(self.work, meta, tensors)
        self.last_save = (time.perf_counter() - start, time.perf_counter())  # (cost, end)

    def _checkpoint_due(self) -> bool:
        """Periodic checkpoints spaced to cost at most output.checkpoint_overhead of the time (a
        full-size DySink checkpoint writes ~5 GB: seconds)."""
        if self.last_save is None:
            return True
        cost, ended = self.last_save
        return checkpoint_due(time.perf_counter() - ended, cost, self.cfg.output.checkpoint_overhead)

    def run(self) -> RenderStats:
        plan, cfg, job = self.plan, self.cfg, self.job
        switch_at = {sw.block: sw for sw in self.switches[1:]}
        self.emit(
            RenderStarted(
                str(job.output),
                plan.blocks,
                plan.latent_frames,
                plan.video_frames,
                plan.fps,
                plan.duration_s,
                first_block=self.gen.block,
            )
        )
        done_before = sum(p["frames"] for p in self.parts[:-1])
        self.loop_started = time.perf_counter()  # models loaded and warmed up: TTFF counts from here
        log = open(job.log_json, "a" if self.checkpoint else "w") if job.log_json else None  # noqa: SIM115
        interrupt = InterruptFlag()
        try:
            with (
                interrupt,
                self.sink_factory(
                    Path(self.parts[-1]["path"]),
                    cfg.output.width,
                    cfg.output.height,
                    cfg.output.fps,
                    crf=cfg.output.crf,
                    lossless=job.lossless,
                    overwrite=True,
                ) as sink,
                FrameHandoff(sink) as frames,
            ):
                first_block = self.gen.block
                for b in range(first_block, plan.blocks):
                    self._block(b, switch_at, frames)
                    written = done_before + frames.frames_queued
                    stats = block_stats(
                        self.last_record, self.timer.pop(), self.probe, written, self.started, plan.fps
                    )
                    stats["since_loaded_s"] = round(time.perf_counter() - self.loop_started, 4)
                    if b == first_block:  # time to first frame: until it reached the encoder
                        frames.flush()
                        assert frames.first_written_at is not None
                        stats["first_frame_s"] = round(frames.first_written_at - self.loop_started, 4)
                    if self.bank is not None:
                        stats["bank_tiers"] = self.bank.stats()
                    if log:
                        log.write(json.dumps(stats) + "\n")
                        log.flush()
                    self.emit(BlockDone(b, plan.blocks, written, written / plan.fps, stats))
                    last = b + 1 == plan.blocks
                    periodic = (b + 1) % cfg.output.checkpoint_every_blocks == 0 and self._checkpoint_due()
                    periodic |= self.bank is not None and self.bank.needs_checkpoint
                    # after a switch every bank entry was re-cached: checkpoint so old files can go
                    if not last and (interrupt.raised or periodic or b in switch_at):
                        self.save(frames)
                    if interrupt.raised and not last:
                        raise KeyboardInterrupt
        finally:
            if log:
                log.close()
        return self._finish(done_before + sink.frames_written)

    def _block(self, b: int, switch_at: dict, frames: FrameHandoff) -> None:
        if b in switch_at:
            self.segment = switch_at[b].segment
            with self.timer.stage("switch"):
                self.gen.switch_prompt(self.text_kv[self.job.segments[self.segment].prompt])
        out = self.gen.next_block(defer_memory=True)  # frames first, then DySink's store
        self.last_record = out.record
        if self.decode_stream is None or frames.frames_queued == 0:  # first frames: in line (TTFF)
            self._decode(out.latents, frames)
        else:
            self.decode_stream.wait_stream(torch.cuda.current_stream())  # the block's latents
            out.latents.record_stream(self.decode_stream)
            with torch.cuda.stream(self.decode_stream):  # runs beside the next block's denoising
                self._decode(out.latents, frames)
        self.gen.finish_block()

    def _decode(self, latents: Tensor, frames: FrameHandoff) -> None:
        with self.timer.stage("decode"):
            decoded = self.decoder.frames_of(latents)
        with self.timer.stage("write"):
            frames.put(decoded[0])

    def _finish(self, frames_written: int) -> RenderStats:
        job = self.job
        if self.bank is not None:
            self.bank.close()
        if len(self.parts) > 1 and self.sink_factory is FfmpegSink:
            self.parts[-1]["frames"] = frames_written - sum(p["frames"] for p in self.parts[:-1])
            join_parts(self.parts, Path(job.output), ffmpeg_exe())
        remove_work_dir(self.work)
        wall = time.perf_counter() - self.started
        result = RenderStats(
            job.output,
            frames_written,
            self.plan.blocks,
            wall,
            frames_written / wall,
            self.probe.peak_gpu_gb(),
            self.probe.peak_rss_gb(),
        )
        self.emit(
            Finished(
                str(job.output),
                frames_written,
                frames_written / self.plan.fps,
                wall,
                {"peak_gpu_gb": result.peak_gpu_gb, "peak_rss_gb": result.peak_rss_gb},
            )
        )
        return result
