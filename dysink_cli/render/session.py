"""render(job, on_event): one video end to end, read top to bottom.

prepare: (1) text embeddings, (2) networks, (3) the streaming decoder, (4) the block generator,
(5) a checkpoint restored into them, (6) kernel warm-up. run: per block (a) a prompt switch,
(b) the generator's next block, (c) its frames decoded once and handed to ffmpeg, (d) DySink's
store with the block's descriptor, (e) the log record, (f) a checkpoint when due or on a stop
signal. Imports config, errors, engine, io, model and the render's own rooms.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dysink_cli.engine.timing import StageTimer
from dysink_cli.io.ffmpeg import FfmpegSink, ffmpeg_exe
from dysink_cli.io.handoff import FrameHandoff
from dysink_cli.model.fp8 import use_fp8
from dysink_cli.render.assemble import build_generator, latent_hw, warm_up
from dysink_cli.render.decode import StreamingDecoder
from dysink_cli.render.device import DTYPES, resolve_device
from dysink_cli.render.events import BlockDone, Event, Finished, Note, PromptSwitch, RenderStarted
from dysink_cli.render.interrupt import StopSignals
from dysink_cli.render.job import RenderJob, RenderStats, StartFrames
from dysink_cli.render.networks import Networks, NetworkSource
from dysink_cli.render.records import MemoryProbe, block_record
from dysink_cli.render.start import encode_start
from dysink_cli.render.workdir import WorkDir, checkpoint_due, job_fingerprint

EventSink = Callable[[Event], None]
BlockDescriptor = Callable[[int], Tensor]
EMBEDDED_NOTES = {  # what a render without real weights draws
    "tiny": "using the built-in demo model with untrained weights (noise-like video); point --weights at "
    "a folder of real checkpoints for real videos",
    "toy": "using the embedded toy world (128x96, trained on a procedural 2-D world; it knows theme words "
    "such as snow, ocean, desert); point --weights at a folder of real checkpoints for real videos",
}


def render(
    job: RenderJob,
    on_event: EventSink,
    *,
    networks: Networks | None = None,
    embeds: dict[str, Tensor] | None = None,
    sink_factory: Callable[..., Any] = FfmpegSink,
    block_descriptor: BlockDescriptor | None = None,
) -> RenderStats:
    """Render (or continue) one video. Raises DysinkError subclasses on user errors.

    `networks`, `embeds` and `sink_factory` replace the loaded networks, the text encoder's output
    and ffmpeg (the GPU benchmark injects random full-size weights and a NullSink).
    `block_descriptor` (block index -> DySink descriptor (D,)) replaces PE-Core's descriptors: block
    i retrieves with it and is stored under it (the revisit benchmark's oracle, by camera position).
    """
    session = RenderSession(job, on_event, sink_factory, block_descriptor)
    try:
        session.prepare(networks, embeds)
        return session.run()
    finally:
        session.close()


class RenderSession:
    """One video's render: the generator, the decoder, the sink, the work folder and checkpoints."""

    def __init__(
        self,
        job: RenderJob,
        on_event: EventSink,
        sink_factory: Callable[..., Any],
        block_descriptor: BlockDescriptor | None = None,  # None: PE-Core describes the blocks
    ) -> None:
        self.job, self.emit, self.sink_factory = job, on_event, sink_factory
        self.block_descriptor = block_descriptor
        self.cfg, self.plan = job.config, job.plan
        self.started = time.perf_counter()
        self.device = resolve_device(job.device)
        self.dtype = DTYPES[self.cfg.model.dtype] if self.device.type == "cuda" else torch.float32
        if self.device.type == "cuda":  # fixed conv shapes per render: let cuDNN pick its fastest kernels
            torch.backends.cudnn.benchmark = True
        self.work = WorkDir(job.output)
        self.checkpoint = self.work.acquire(job)  # locked until run() ends
        self.last_save: tuple[float, float] | None = None  # (seconds it took, perf_counter at its end)
        self.timer, self.probe = StageTimer(self.device), MemoryProbe(self.device)
        self.segment = 0
        self.parts: list[dict[str, Any]] = [{"path": str(job.output), "frames": 0}]
        self.frames_now = 0  # frames this run handed to the encoder
        self.given: list[Tensor] = []  # --image / --continue: clean latent blocks that come first
        self.context_blocks = 0  # blocks of --continue context before the plan's blocks
        self.first_frame_logged = False
        self.finished = False

    def close(self) -> None:
        """Release the output. A run that failed before writing a frame or a checkpoint leaves
        nothing behind (no empty video, no work folder); otherwise what it wrote stays resumable."""
        if not self.finished and self.frames_now == 0 and self.last_save is None:
            if self.checkpoint is None:
                Path(self.job.output).unlink(missing_ok=True)
                self.work.release(remove=True)
                return
            Path(self.parts[-1]["path"]).unlink(missing_ok=True)
        self.work.release()

    def prepare(self, networks: Networks | None, embeds: dict[str, Tensor] | None) -> None:
        cfg, job = self.cfg, self.job
        if cfg.model.name in EMBEDDED_NOTES:
            self.emit(Note(EMBEDDED_NOTES[cfg.model.name]))
        for sw in job.switches[1:]:
            prompt = job.segments[sw.segment].prompt
            self.emit(PromptSwitch(sw.segment, sw.block, sw.requested_s, sw.effective_s, prompt))
        source = NetworkSource(cfg) if networks is None or embeds is None else None
        # 1. text: each distinct prompt once; the encoder leaves the device before the DiT loads
        if embeds is None:
            assert source is not None
            embeds = source.encode_prompts([s.prompt for s in job.segments], self.device, self.dtype)
        # 2. networks
        self.nets = networks or source.load(self.device, self.dtype)  # type: ignore[union-attr]
        use_fp8(self.nets.dit.blocks, cfg.model.fp8)  # on or off: the bench reuses networks
        if self.device.type == "cuda":
            self.nets.vae.use_channels_last()  # -23 % decode time (bench/RESULTS.md, step 13)
            if self.nets.taehv is not None:
                self.nets.taehv.use_channels_last()
            if cfg.model.compile:
                self.nets.dit.use_compiled_ops()
                self.nets.vae.use_compiled_ops()
        self.text_kv = {p: self.nets.dit.encode_text(e.to(self.device)) for p, e in embeds.items()}
        # 3. the streaming decoder
        self.decoder = StreamingDecoder(
            self.nets.vae, self.nets.pe, cfg.dysink.descriptors, self.nets.taehv,
            output=cfg.model.decoder, descriptor_decoder=cfg.dysink.descriptor_decoder,
        )  # fmt: skip
        shared = cfg.engine.policy == "dysink" and cfg.dysink.descriptors == "shared"
        overlap = self.device.type == "cuda" and cfg.model.overlap_decode and not shared
        self.decode_stream = torch.cuda.Stream(self.device) if overlap else None
        # 4. the block generator (it owns the KV cache and the memory bank)
        self.gen = build_generator(
            cfg, self.nets, job.seed, latent_hw(cfg, self.nets), self.work.bank_dir, self.device, self.dtype,
            self.timer,
        )  # fmt: skip
        # 5. continue from a checkpoint, or start from given frames (--image / --continue)
        if self.checkpoint is not None:
            self._restore()
        elif job.start is not None:
            self._encode_start(job.start)
        self.gen.set_prompt(self.text_kv[job.segments[self.segment].prompt])
        # 6. warm-up (CUDA): compile and tune before the clock for the first frame starts
        if self.device.type == "cuda":
            start = time.perf_counter()
            warm_up(self.gen, self.nets, cfg.dysink.top_k)
            self.emit(
                Note(f"warmed up (kernel compile and cuDNN tuning) in {time.perf_counter() - start:.1f} s")
            )

    def _encode_start(self, start: StartFrames) -> None:
        """The picture or video through the VAE encoder, as whole blocks of clean latents."""
        size, spec = (self.cfg.output.width, self.cfg.output.height), self.gen.spec
        self.given, note = encode_start(
            start, self.nets.vae, size, spec.window_frames, spec.frames_per_block, self.device, self.dtype
        )
        self.context_blocks = 0 if start.kind == "image" else len(self.given)
        self.emit(Note(note))

    def _owners(self) -> dict[str, Any]:
        return {"generator": self.gen, "decoder": self.decoder}

    def _restore(self) -> None:
        checkpoint = self.checkpoint
        assert checkpoint is not None
        self.work.restore(checkpoint, self._owners())
        self.segment = checkpoint.meta["segment"]
        self.context_blocks = checkpoint.meta.get("context_blocks", 0)
        self.parts = [dict(p) for p in checkpoint.meta["parts"]]
        self.parts.append({"path": str(self.work.part_path(len(self.parts))), "frames": 0})
        written = sum(p["frames"] for p in self.parts)
        where = f"block {checkpoint.block} of {self.plan.blocks}"
        self.emit(Note(f"resuming from {where} ({written} frames already written)"))

    def save(self, frames: FrameHandoff) -> None:
        """Checkpoint the state after the last finished block (frames of the part being written)."""
        if self.decode_stream is not None:
            torch.cuda.current_stream().wait_stream(self.decode_stream)  # the decoder state is done
        frames.flush()
        self.parts[-1]["frames"] = frames.sink.frames_written
        meta = {
            "job": job_fingerprint(self.job),
            "block": self.gen.block,
            "segment": self.segment,
            "parts": self.parts,
            "context_blocks": self.context_blocks,
        }
        start = time.perf_counter()
        with self.timer.stage("checkpoint"):
            self.work.save(meta, self._owners())
        self.last_save = (time.perf_counter() - start, time.perf_counter())  # (cost, end)

    def _checkpoint_due(self, block: int) -> bool:
        """Every output.checkpoint_every_blocks blocks, spaced to cost at most
        output.checkpoint_overhead of the time (a full-size DySink checkpoint writes ~5 GB)."""
        if (block + 1) % self.cfg.output.checkpoint_every_blocks:
            return False
        if self.last_save is None:
            return True
        cost, ended = self.last_save
        return checkpoint_due(time.perf_counter() - ended, cost, self.cfg.output.checkpoint_overhead)

    def run(self) -> RenderStats:
        plan, cfg, job = self.plan, self.cfg, self.job
        shift = self.context_blocks  # --continue: the plan's blocks come after the context
        switch_at = {sw.block + shift: sw for sw in job.switches[1:]}
        first_block, blocks = self.gen.block, plan.blocks + shift
        frames_total = plan.video_frames
        if shift:
            writes = job.start is not None and job.start.writes_input
            frames_total = (
                4 * cfg.engine.frames_per_block * blocks - 3
                if writes
                else 4 * cfg.engine.frames_per_block * plan.blocks
            )
        self.emit(RenderStarted(str(job.output), blocks, blocks * cfg.engine.frames_per_block, frames_total,
                                plan.fps, frames_total / plan.fps, first_block=first_block))  # fmt: skip
        done_before = sum(p["frames"] for p in self.parts[:-1])
        self.loop_started = time.perf_counter()  # networks loaded and warmed up: TTFF counts from here
        log = open(job.log_json, "a" if self.checkpoint else "w") if job.log_json else None  # noqa: SIM115
        out, size = Path(self.parts[-1]["path"]), (cfg.output.width, cfg.output.height)
        try:
            with (
                StopSignals() as stop,
                self.sink_factory(
                    out, *size, cfg.output.fps, crf=cfg.output.crf, lossless=job.lossless, overwrite=True
                ) as sink,  # fmt: skip
                FrameHandoff(sink) as frames,
            ):
                for b in range(first_block, blocks):
                    self._block(b, switch_at, frames)  # (a)-(d)
                    written = done_before + frames.frames_queued
                    self.frames_now = frames.frames_queued
                    stats = self._record(b, first_block, written, frames)  # (e)
                    if log:
                        log.write(json.dumps(stats) + "\n")
                        log.flush()
                    self.emit(BlockDone(b, blocks, written, written / plan.fps, stats))
                    if b + 1 == blocks:
                        break
                    # (f) after a switch every bank entry was re-cached: checkpoint so old files can go
                    bank_full = self.gen.memory is not None and self.gen.memory.bank.needs_checkpoint
                    if stop.received or self._checkpoint_due(b) or bank_full or b in switch_at:
                        self.save(frames)
                    if stop.received:
                        raise stop.stop(str(job.output), b + 1, saved=True)
        finally:
            if log:
                log.close()
            self.gen.close()
        return self._finish(done_before + sink.frames_written)

    def _block(self, b: int, switch_at: dict, frames: FrameHandoff) -> None:
        if b in switch_at:  # (a)
            self.segment = switch_at[b].segment
            with self.timer.stage("switch"):
                self.gen.switch_prompt(self.text_kv[self.job.segments[self.segment].prompt])
        given = self.given[b] if b < len(self.given) else None  # (b) given frames come first
        describe = self.block_descriptor if self.gen.memory is not None else None
        query = describe(b) if describe is not None and given is None else None  # DySink: retrieve by it
        out = self.gen.next_block(query) if given is None else self.gen.prefill(given)
        self.last_record = out.record
        if given is not None and not (self.job.start and self.job.start.writes_input):
            with self.timer.stage("decode"):
                self.decoder.frames(out.latents)  # context only: the decoder state sees it, the video not
        elif self.decode_stream is None or frames.frames_queued == 0:  # (c) first frames in line (TTFF)
            self._decode(out.latents, frames)
        else:
            self.decode_stream.wait_stream(torch.cuda.current_stream())  # the block's latents
            out.latents.record_stream(self.decode_stream)
            with torch.cuda.stream(self.decode_stream):  # runs beside the next block's denoising
                self._decode(out.latents, frames)
        if self.gen.needs_descriptor:  # (d) DySink: describe, dedup and store the block
            with self.timer.stage("describe"):
                if self.block_descriptor is not None:
                    descriptor = self.block_descriptor(out.index)
                else:
                    descriptor = self.decoder.descriptor(out.latents)
            self.gen.finish_block(descriptor)

    def _decode(self, latents: Tensor, frames: FrameHandoff) -> None:
        with self.timer.stage("decode"):
            decoded = self.decoder.frames(latents)
        with self.timer.stage("write"):
            frames.put(decoded[0])

    def _record(self, b: int, first_block: int, written: int, frames: FrameHandoff) -> dict[str, Any]:
        stats = block_record(
            self.last_record, self.timer.pop(), self.probe, written, self.started, self.plan.fps
        )
        stats["since_loaded_s"] = round(time.perf_counter() - self.loop_started, 4)
        if not self.first_frame_logged and frames.frames_queued:  # time to first frame: until it
            frames.flush()  # reached the encoder
            assert frames.first_written_at is not None
            stats["first_frame_s"] = round(frames.first_written_at - self.loop_started, 4)
            self.first_frame_logged = True
        if self.gen.memory is not None:
            stats["bank_tiers"] = self.gen.memory.bank.stats()
        return stats

    def _finish(self, frames_written: int) -> RenderStats:
        job = self.job
        if len(self.parts) > 1 and self.sink_factory is FfmpegSink:
            self.parts[-1]["frames"] = frames_written - sum(p["frames"] for p in self.parts[:-1])
            self.work.join(self.parts, ffmpeg_exe())
        self.work.remove()
        self.finished = True
        wall = time.perf_counter() - self.started
        peaks = {"peak_gpu_gb": self.probe.peak_gpu_gb(), "peak_rss_gb": self.probe.peak_rss_gb()}
        result = RenderStats(job.output, frames_written, self.plan.blocks, wall, frames_written / wall,
                             peaks["peak_gpu_gb"], peaks["peak_rss_gb"])  # fmt: skip
        self.emit(Finished(str(job.output), frames_written, frames_written / self.plan.fps, wall, peaks))
        return result
