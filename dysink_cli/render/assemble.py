"""Config -> the parts of a render: the loop settings, the RoPE table, the memory bank, the block
generator, and the warm-up that compiles and tunes kernels before the first block.

The only place that reads the user's config on the engine's behalf (the engine imports nothing
above model/). Imports config, engine and model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dysink_cli.config import RenderConfig
from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.bank import MemoryBank
from dysink_cli.engine.memory.descriptors import describe_frames, frames_for_descriptor
from dysink_cli.engine.noise import SeededNoise, mix_seed
from dysink_cli.engine.schedule import denoising_timesteps
from dysink_cli.engine.timing import StageTimer
from dysink_cli.model.attention import resolve_backend
from dysink_cli.model.config import DiTConfig
from dysink_cli.model.rope import RopeSpec, lol_frequencies
from dysink_cli.render.networks import Networks

LOL_STREAM = 0x4C6F4C  # "LoL": keeps the jitter draw apart from the noise draws


def loop_spec(cfg: RenderConfig) -> LoopSpec:
    """The block loop's settings in frames, resolved from the user's config."""
    eng, ds = cfg.engine, cfg.dysink
    fpb = eng.frames_per_block
    capacity = {
        "window": eng.window_frames,
        "static-sink": eng.window_frames,
        "dysink": eng.window_frames + fpb * ds.top_k,
        "rolling-sink": eng.horizon_frames,
    }[eng.policy]
    steps = denoising_timesteps(cfg.sampler.steps, cfg.sampler.shift, cfg.sampler.warp)
    return LoopSpec(
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


def render_rope(cfg: RenderConfig, dit: DiTConfig, seed: int) -> RopeSpec:
    """Wan's frequencies, or LoL's per-head jitter drawn once from (seed, "LoL"): cached keys keep
    their rotation and a resumed render is identical."""
    r = cfg.rope
    gen = torch.Generator().manual_seed(mix_seed(seed, LOL_STREAM))
    return lol_frequencies(dit, r.jitter, gen, r.jitter_axes, r.jitter_scope, r.jitter_heads)


def open_bank(cfg: RenderConfig, work_dir: Path, device: torch.device) -> MemoryBank:
    """An empty bank spilling into the render's work folder (a resume loads its state into it)."""
    b = cfg.bank
    return MemoryBank(
        max_entries=b.max_entries,
        work_dir=work_dir,
        ram_gb=b.ram_gb,
        disk_gb=b.disk_gb,
        gpu_entries=b.gpu_entries,
        dtype=b.dtype,
        device=device,
        checkpoint_blocks=cfg.output.checkpoint_every_blocks,
    )


def latent_hw(cfg: RenderConfig, nets: Networks) -> tuple[int, int]:
    """The render's latent grid (height, width): the output size over the VAE's spatial stride."""
    stride = nets.vae.cfg.spatial_stride
    return cfg.output.height // stride, cfg.output.width // stride


def build_generator(
    cfg: RenderConfig,
    nets: Networks,
    seed: int,
    latent_hw: tuple[int, int],
    bank_dir: Path,
    device: torch.device,
    dtype: torch.dtype,
    timer: StageTimer,
) -> BlockGenerator:
    spec = loop_spec(cfg)
    return BlockGenerator(
        nets.dit,
        spec,
        SeededNoise(seed, tiled=cfg.engine.noise == "tiled"),
        latent_hw,
        device=device,
        dtype=dtype,
        backend=resolve_backend(cfg.model.attention, device),
        rope=render_rope(cfg, nets.dit.cfg, seed),
        timer=timer,
        bank=open_bank(cfg, bank_dir, device) if spec.uses_memory else None,
        graphs=cfg.model.cuda_graphs,
    )


@torch.no_grad()
def warm_up(gen: BlockGenerator, nets: Networks, top_k: int) -> None:
    """Compile the fused kernels and let cuDNN tune its VAE convs before the first block (CUDA).

    Runs one block-sized forward into a throwaway cache and a fresh + continued decode (with each
    decoder loaded); the render's own state is untouched. Counted as loading, not as time to first
    frame.
    """
    fpb, device, dtype = gen.spec.frames_per_block, gen.device, gen.dtype
    z = torch.zeros(1, fpb, nets.dit.cfg.in_dim, *gen.latent_hw, device=device, dtype=dtype)
    scratch = gen.new_cache(fpb)
    gen.forward(z, 0.0, 0, fpb, cache=scratch)
    frames, state = nets.vae.decode_chunk(z, nets.vae.decoder_state())
    nets.vae.decode_chunk(z, state)
    if nets.taehv is not None:  # output or descriptor decoder: a block alone, then a continued one
        nets.taehv.decode_chunk(z, nets.taehv.decode_chunk(z, nets.taehv.decoder_state())[1])
    if gen.memory is not None and nets.pe is not None:
        describe_frames(frames_for_descriptor(frames)[0], nets.pe)  # PE-Core's kernels
        shape = scratch.k[:, :, : fpb * gen.tokens_per_frame].shape
        gen.memory.bank.reserve_pinned(tuple(shape), scratch.k.dtype)  # pinned on a thread from now on
        _warm_up_merge(nets, shape[1:], top_k, device, dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _warm_up_merge(
    nets: Networks, kv_shape: torch.Size, top_k: int, device: torch.device, dtype: torch.dtype
) -> None:
    """Compile the gate's piece merge for every entry count (else the first blocks with memory
    would compile it mid-render)."""
    b, n, h, d = kv_shape
    out = torch.zeros(b, n, h, d, device=device, dtype=dtype)
    lse = torch.zeros(b, h, n, device=device)
    merge = nets.dit.blocks[0].ops.merge
    for pieces in range(2, top_k + 2):
        merge([out] * pieces, [lse] * pieces, torch.ones(pieces, dtype=torch.bool, device=device))
