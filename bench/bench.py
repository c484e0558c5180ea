"""GPU benchmark: full-size Wan2.1-1.3B (random bf16 weights), real VAE and PE-Core-S16-384 sizes,
832x480, N blocks per preset through the real render() with a NullSink (no ffmpeg on the GPU box).

    python bench/bench.py --blocks 12 --warmup 3 --presets dysink,longlive,self-forcing

Prints the floor arithmetic and a table; appends one JSON line per preset to --jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.benchmarks.floor import Rates, forward_flops  # noqa: E402
from dysink_cli.benchmarks.floor import floor_ms as rate_floor_ms  # noqa: E402
from dysink_cli.benchmarks.networks import NetworkCache  # noqa: E402
from dysink_cli.benchmarks.networks import random_embeds as shared_embeds  # noqa: E402
from dysink_cli.benchmarks.speed import SpeedBench, SpeedRequest  # noqa: E402
from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.model.config import WAN_1_3B  # noqa: E402
from dysink_cli.model.vae import WanVAE  # noqa: E402
from dysink_cli.render.networks import Networks  # noqa: E402

MATMUL_TFLOPS = 748.0  # measured bf16 matmul on the H100 (issue 6)
ATTN_TFLOPS = 532.0  # measured cuDNN SDPA on a DySink layer


def floor_ms(keys_frames: int, tokens_per_frame: int = 1560, frames: int = 3) -> dict[str, float]:
    """FLOPs of one DiT forward over a block and the time at the measured rates."""
    flops = forward_flops(WAN_1_3B, tokens_per_frame, keys_frames, frames)
    return {
        "linear_tflop": flops.linear / 1e12,
        "attn_tflop": flops.attention / 1e12,
        "ms": rate_floor_ms(flops, Rates(MATMUL_TFLOPS, ATTN_TFLOPS)),
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


def profile_blocks(blocks: int = 2) -> None:
    """Top CUDA kernels over `blocks` DySink blocks after a warm-up (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    run_preset("dysink", "standalone", 3, 1, [], apart=False)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run_preset("dysink", "standalone", blocks + 1, 1, [], apart=False)
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
    emb = random_embeds("x")["x"].cuda()
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


NETWORKS = NetworkCache(torch.device("cuda"))  # one set of random full-size networks for every run


def build_models(device: torch.device, dtype: torch.dtype) -> Networks:
    """The random full-size networks every run of this script shares (built once, on `device`)."""
    assert device.type == "cuda"
    cfg = resolve_config("dysink", [f'model.dtype="{str(dtype).removeprefix("torch.")}"'])
    loaded = NETWORKS.get(cfg)
    print(f"built random full-size models in {loaded.load_s:.1f} s", flush=True)
    return loaded.networks


def random_embeds(prompt: str, device: torch.device | None = None) -> dict[str, torch.Tensor]:
    """The bench's umT5-shaped prompt embedding, on the CPU (`device` kept for the other scripts)."""
    return shared_embeds(prompt)


def run_preset(
    preset: str, descriptors: str, blocks: int, warmup: int, extra: list[str], apart: bool = True
) -> dict:
    """One preset through `dysink bench speed`'s code (the real render() into a NullSink, on the
    networks NETWORKS holds); its results.jsonl row. `apart`: also the floor and x264."""
    request = SpeedRequest(
        presets=(preset,),
        blocks=blocks,
        warmup=warmup,
        overrides=tuple(extra),
        descriptors=(descriptors,),
        device="cuda",
        measure_apart=apart,
    )
    bench = SpeedBench(request, NETWORKS)
    return bench.run(bench.cases[0]).to_json()


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
        profile_blocks()
        return
    rows = []
    for preset in args.presets.split(","):
        modes = args.descriptors.split(",") if preset.startswith("dysink") else ["standalone"]
        for mode in modes:
            row = run_preset(preset, mode, args.blocks, args.warmup, args.set)
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


if __name__ == "__main__":
    main()
