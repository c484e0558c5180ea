"""GPU benchmark: full-size Wan2.1-1.3B (random bf16 weights), real VAE and PE-Core-S16-384 sizes,
832x480, N blocks per preset through the real render() with a NullSink (no ffmpeg on the GPU box).

    python bench/bench.py --blocks 12 --warmup 3 --presets dysink,longlive,self-forcing

Prints the floor arithmetic and a table; appends one JSON line per preset to --jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.io.ffmpeg import NullSink  # noqa: E402
from dysink_cli.model.config import PE_CORE_S16_384, WAN_1_3B, WAN_VAE  # noqa: E402
from dysink_cli.model.dit import WanDiT  # noqa: E402
from dysink_cli.model.pe_core import PECoreVision  # noqa: E402
from dysink_cli.model.tiny import init_untrained  # noqa: E402
from dysink_cli.model.vae import WanVAE  # noqa: E402
from dysink_cli.render.events import BlockDone  # noqa: E402
from dysink_cli.render.job import RenderJob  # noqa: E402
from dysink_cli.render.networks import Networks  # noqa: E402
from dysink_cli.timeline import Segment  # noqa: E402

MATMUL_TFLOPS = 748.0  # measured bf16 matmul on the H100 (issue 6)
ATTN_TFLOPS = 532.0  # measured cuDNN SDPA on a DySink layer


def floor_ms(keys_frames: int, tokens_per_frame: int = 1560, frames: int = 3) -> dict[str, float]:
    """FLOPs of one DiT forward over a block and the time at the measured rates."""
    cfg = WAN_1_3B
    tokens = frames * tokens_per_frame
    per_token = 2 * (4 * cfg.dim**2 + 2 * cfg.dim**2 + 2 * cfg.dim * cfg.ffn_dim) * cfg.num_layers
    linear = per_token * tokens
    attn = 4 * tokens * keys_frames * tokens_per_frame * cfg.dim * cfg.num_layers
    cross = 4 * tokens * cfg.text_len * cfg.dim * cfg.num_layers
    return {
        "linear_tflop": linear / 1e12,
        "attn_tflop": (attn + cross) / 1e12,
        "ms": linear / MATMUL_TFLOPS / 1e9 + (attn + cross) / ATTN_TFLOPS / 1e9,
    }


def attention_backends() -> dict[str, float]:
    """Median ms of one DySink-layer attention (4680 q x 23400 k, 12 x 128, bf16) per SDPA backend."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(1, 12, 4680, 128, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 12, 23400, 128, device="cuda", dtype=torch.bfloat16)
    out = {}
    for name, backend in (
        ("cudnn", SDPBackend.CUDNN_ATTENTION),
        ("flash", SDPBackend.FLASH_ATTENTION),
        ("efficient", SDPBackend.EFFICIENT_ATTENTION),
    ):
        try:
            with sdpa_kernel([backend]):
                times = []
                for _ in range(25):
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    torch.nn.functional.scaled_dot_product_attention(q, k, k)
                    end.record()
                    torch.cuda.synchronize()
                    times.append(start.elapsed_time(end))
            out[name] = statistics.median(times[5:])
        except RuntimeError as err:
            out[name] = float("nan")
            print(f"attention backend {name} unavailable: {str(err).splitlines()[0]}")
    return out


def profile_blocks(models: Networks, blocks: int = 2) -> None:
    """Top CUDA kernels over `blocks` DySink blocks after a warm-up (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    run_preset("dysink", "standalone", 3, 1, models, [])
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run_preset("dysink", "standalone", blocks + 1, 1, models, [])
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))


def vae_memory_formats(vae: WanVAE) -> dict[str, float]:
    """Median ms of a streamed 3-latent block decode (832x480 -> 12 frames), NCDHW vs channels-last."""
    torch.backends.cudnn.benchmark = True
    z = torch.randn(1, 3, 16, 60, 104, device="cuda", dtype=torch.bfloat16)
    out = {}
    for name, fmt in (("contiguous", torch.contiguous_format), ("channels_last_3d", torch.channels_last_3d)):
        for module in vae.modules():
            if isinstance(module, torch.nn.Conv3d):
                module.weight.data = module.weight.data.contiguous(memory_format=fmt)
        state = vae.decoder_state()
        _, state = vae.decode_chunk(z, state)
        times = []
        for _ in range(6):
            torch.cuda.synchronize()
            start = time.perf_counter()
            _, state = vae.decode_chunk(z, state)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
        out[name] = statistics.median(times[1:])
    for module in vae.modules():
        if isinstance(module, torch.nn.Conv3d):
            module.weight.data = module.weight.data.contiguous()
    return out


def bf16_vs_fp32(models: Networks, blocks: int = 3) -> float:
    """Relative L2 error of bf16 latents against an fp32 run of the same full-size random model."""
    from dysink_cli.engine.generator import BlockGenerator
    from dysink_cli.engine.loop_spec import LoopSpec
    from dysink_cli.engine.noise import SeededNoise

    spec = LoopSpec(policy="static-sink", window_frames=12, sink_frames=3, capacity_frames=12)
    emb = random_embeds("x", torch.device("cuda"))["x"].cuda()
    outs = []
    for dtype in (torch.float32, torch.bfloat16):
        dit = models.dit.to(dtype)
        gen = BlockGenerator(
            dit, spec, SeededNoise(7), (60, 104), device="cuda", dtype=dtype, backend="cudnn"
        )
        gen.set_prompt(dit.encode_text(emb))
        outs.append(torch.cat([gen.next_block().latents.float() for _ in range(blocks)], dim=1))
        del gen
    models.dit.to(torch.bfloat16)
    return float((outs[1] - outs[0]).norm() / outs[0].norm())


def build_models(device: torch.device, dtype: torch.dtype) -> Networks:
    start = time.perf_counter()
    with torch.device(device):
        dit = init_untrained(WanDiT(WAN_1_3B), 1).to(dtype).eval().requires_grad_(False)
        vae = init_untrained(WanVAE(WAN_VAE), 2).to(dtype).eval().requires_grad_(False)
        pe = init_untrained(PECoreVision(PE_CORE_S16_384), 3).float().eval().requires_grad_(False)
    torch.cuda.synchronize()
    print(f"built random full-size models in {time.perf_counter() - start:.1f} s", flush=True)
    return Networks(dit=dit, vae=vae, pe=pe, description="random full-size")


def random_embeds(prompt: str, device: torch.device) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    emb = torch.randn(1, WAN_1_3B.text_len, WAN_1_3B.text_dim, generator=gen) * 0.2
    emb[:, 40:] = 0  # T5 output is zero after the prompt
    return {prompt: emb}


def run_preset(
    preset: str, descriptors: str, blocks: int, warmup: int, models: Networks, extra: list[str]
) -> dict:
    cfg = resolve_config(preset, [f'dysink.descriptors="{descriptors}"', *extra])
    seconds = (4 * 3 * blocks - 3) / cfg.output.fps
    prompt = "benchmark"
    job = RenderJob(
        segments=(Segment(0.0, prompt),),
        seconds=seconds,
        output=Path("/tmp/bench.mp4"),
        config=cfg,
        seed=1,
        device="cuda",
        overwrite=True,
    )
    done: list[dict] = []
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    stats = render(
        job,
        lambda e: done.append(e.stats) if isinstance(e, BlockDone) else None,
        networks=models,
        embeds=random_embeds(prompt, torch.device("cuda")),
        sink_factory=NullSink,
    )
    wall = time.perf_counter() - t0
    steady = done[warmup:]
    frames = [d["frames_written"] for d in done]
    block_frames = 4 * cfg.engine.frames_per_block
    stage_names = sorted({k for d in steady for k in d["ms"]})
    ms = {k: statistics.median(d["ms"].get(k, 0.0) for d in steady) for k in stage_names}
    block_ms = statistics.median(
        (steady[i]["time_s"] - done[warmup + i - 1]["time_s"]) * 1000 for i in range(len(steady))
    )
    dit_ms = ms.get("denoise", 0.0) + ms.get("clean_pass", 0.0)
    return {
        "date": dt.date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "commit": _commit(),
        "preset": preset,
        "descriptors": descriptors if cfg.engine.policy == "dysink" else "none",
        "e2e_fps": block_frames / (block_ms / 1000),
        "dit_fps": block_frames / (dit_ms / 1000) if dit_ms else math.nan,
        "ttff_s": done[0]["first_frame_s"],  # loop start -> first frames in the encoder's hands
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1e9,
        "peak_rss_gb": stats.peak_rss_gb,
        "ms_per_block": {"total": block_ms, **ms},
        "blocks": blocks,
        "frames": frames[-1],
        "wall_s": wall,
    }


def _commit() -> str:
    """The commit measured: $DYSINK_COMMIT (the GPU box receives no .git), else git."""
    if os.environ.get("DYSINK_COMMIT"):
        return os.environ["DYSINK_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--presets", default="dysink,longlive,self-forcing")
    parser.add_argument("--descriptors", default="standalone,shared")
    parser.add_argument("--jsonl", type=Path, default=Path("bench/results.jsonl"))
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--profile", action="store_true", help="print the top CUDA kernels of 2 blocks")
    parser.add_argument("--experiments", action="store_true", help="VAE memory formats, bf16 vs fp32")
    args = parser.parse_args()
    device = torch.device("cuda")
    for keys in (9, 15):
        f = floor_ms(keys)
        print(
            f"floor per forward, {keys}-frame keys: {f['linear_tflop']:.1f} TFLOP linear + "
            f"{f['attn_tflop']:.1f} TFLOP attention = {f['ms']:.1f} ms "
            f"at {MATMUL_TFLOPS:g}/{ATTN_TFLOPS:g} TFLOP/s"
        )
    dysink_block = 4 * floor_ms(15)["ms"] + floor_ms(9)["ms"]
    print(
        f"DySink block floor (4 steps x 15 frames + clean pass x 9): {dysink_block:.0f} ms -> "
        f"{12 / dysink_block * 1000:.1f} FPS DiT-only ceiling",
        flush=True,
    )
    backends = attention_backends()
    print(
        "SDPA on a DySink layer (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in backends.items()), flush=True
    )
    models = build_models(device, torch.bfloat16)
    if args.experiments:
        print(f"VAE block decode (ms): {vae_memory_formats(models.vae)}", flush=True)
        print(f"bf16 vs fp32 latents, 3 blocks, relative L2: {bf16_vs_fp32(models):.2e}", flush=True)
    if args.profile:
        profile_blocks(models)
        return
    rows = []
    for preset in args.presets.split(","):
        modes = args.descriptors.split(",") if preset.startswith("dysink") else ["standalone"]
        for mode in modes:
            row = run_preset(preset, mode, args.blocks, args.warmup, models, args.set)
            rows.append(row)
            print(json.dumps(row), flush=True)
            args.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with open(args.jsonl, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    print(
        "\n| preset | descriptors | e2e FPS | DiT FPS | TTFF s | peak GPU GB | peak RSS GB "
        "| ms/block (stages) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        stages = ", ".join(f"{k} {v:.0f}" for k, v in r["ms_per_block"].items())
        print(
            f"| {r['preset']} | {r['descriptors']} | {r['e2e_fps']:.1f} | {r['dit_fps']:.1f} "
            f"| {r['ttff_s']:.2f} | "
            f"{r['peak_gpu_gb']:.1f} | {r['peak_rss_gb']:.1f} | {stages} |"
        )


from dysink_cli.render.session import render  # noqa: E402

if __name__ == "__main__":
    main()
