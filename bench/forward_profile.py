"""Where one full-size DiT forward spends its time (H100, bf16, 832x480, random weights).

    python bench/forward_profile.py [--keys 12,15] [--graphs]

Per key length (frames of keys attended, the new block's 3 frames included): the GPU time of an
eager forward (CUDA events), the same forward replayed from a CUDA graph (launch overhead
removed), the floor at the measured matmul / attention rates, and the kernels grouped into GEMM,
attention, and everything else (torch.profiler). No engine, no gate: a fixed-slot cache.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench import build_models, floor_ms, random_embeds  # noqa: E402
from dysink_cli.model.dit import AttnContext  # noqa: E402
from dysink_cli.model.rope import rope_tables, wan_frequencies  # noqa: E402

TOKENS_PER_FRAME = 1560
CATEGORIES = (
    ("attention", re.compile(r"cudnn|fmha|flash|attention|sdpa", re.I)),
    ("conv", re.compile(r"conv|implicit|winograd|nchw|nhwc|fprop", re.I)),
    ("gemm", re.compile(r"gemm|nvjet|cutlass|xmma|matmul|sm90_", re.I)),
    ("copy/cat", re.compile(r"copy|cat|Memcpy|memset", re.I)),
    ("norm", re.compile(r"norm", re.I)),
)
VAE_CATEGORIES = (  # the VAE runs no attention at block level: cuDNN kernels there are its convs
    ("upsample", re.compile(r"upsample", re.I)),
    ("conv", re.compile(r"cudnn|conv|implicit|winograd|fprop|xmma|sm90_|nvjet|gemm", re.I)),
    ("copy/cat", re.compile(r"copy|cat|Memcpy|memset", re.I)),
    ("norm/silu (triton)", re.compile(r"norm|silu|triton", re.I)),
)


class FixedCache:
    """Static slots: the call's K/V land in the last 3 frames; all keys are attended."""

    def __init__(self, layers: int, keys_frames: int, heads: int, head_dim: int) -> None:
        shape = (layers, 1, keys_frames * TOKENS_PER_FRAME, heads, head_dim)
        self.k = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        self.v = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        self.new = 3 * TOKENS_PER_FRAME

    def attend_kv(self, layer: int, k, v, k_raw):
        self.k[layer, :, -self.new :] = k
        self.v[layer, :, -self.new :] = v
        return self.k[layer], self.v[layer], 0


def gpu_ms(fn, repeats: int = 8) -> float:
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times[1:])


def kernel_split(fn, categories=CATEGORIES) -> dict[str, float]:
    """ms per call by kernel category (one profiled call after a warm call)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    split: dict[str, float] = defaultdict(float)
    top: list[tuple[float, int, str]] = []
    for evt in prof.key_averages():
        us = evt.self_device_time_total
        if us <= 0:
            continue
        name = evt.key
        cat = next((c for c, pat in categories if pat.search(name)), "elementwise/other")
        split[cat] += us / 1000
        top.append((us / 1000, evt.count, name[:90]))
    for ms, count, name in sorted(top, reverse=True)[:18]:
        print(f"    {ms:7.2f} ms  x{count:<4d} {name}")
    print("  by category (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(split.items())))
    return dict(split)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", default="12,15", help="frames of keys per forward")
    parser.add_argument("--graphs", action="store_true", help="also time a CUDA-graph replay")
    parser.add_argument("--vae", action="store_true", help="also split a streamed 3-latent decode")
    parser.add_argument("--compile", action="store_true", help="also the torch.compile'd block stages")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    models = build_models(torch.device("cuda"), torch.bfloat16)
    dit = models.dit
    cfg = dit.cfg
    text_kv = dit.encode_text(next(iter(random_embeds("x", torch.device("cuda")).values())).cuda())
    rope = rope_tables(wan_frequencies(cfg.head_dim), torch.arange(30, 33), 30, 52, "cuda")
    x = torch.randn(1, 16, 3, 60, 104, device="cuda", dtype=torch.bfloat16)
    t = torch.full((1, 3), 937.5, device="cuda")
    if args.vae:
        z = torch.randn(1, 3, 16, 60, 104, device="cuda", dtype=torch.bfloat16)
        state = models.vae.decoder_state()
        _, state = models.vae.decode_chunk(z, state)

        def decode():
            return models.vae.decode_chunk(z, state)[0]

        def per_latent():  # the reference's loop: one latent per call
            s = state
            for i in range(z.shape[1]):
                s = models.vae.decode_chunk(z[:, i : i + 1], s)[1]

        with torch.no_grad():
            if args.compile:
                models.vae.use_compiled_ops()
                decode(), per_latent()
            print(
                f"VAE streamed 3-latent decode: {gpu_ms(decode):.1f} ms in one call, "
                f"{gpu_ms(per_latent):.1f} ms latent by latent",
                flush=True,
            )
            kernel_split(decode)
            models.vae.use_channels_last()
            state = models.vae.decode_chunk(z, models.vae.decoder_state())[1]
            decode(), decode()
            print(f"VAE decode, channels-last activations: {gpu_ms(decode):.1f} ms", flush=True)
            kernel_split(decode)
    variants = ["eager", "compiled"] if args.compile else ["eager"]
    for variant, keys in ((v, int(k)) for v in variants for k in args.keys.split(",")):
        if variant == "compiled":
            dit.use_compiled_ops()
        cache = FixedCache(cfg.num_layers, keys, cfg.num_heads, cfg.head_dim)

        def forward(cache=cache):
            return dit(x, t, text_kv, rope, AttnContext(cache=cache), "cudnn")

        with torch.no_grad():
            start = time.perf_counter()
            forward()
            torch.cuda.synchronize()
            first_s = time.perf_counter() - start
            eager = gpu_ms(forward)
            floor = floor_ms(keys)
            print(
                f"{variant}, keys {keys} frames: {eager:.1f} ms/forward (first call {first_s:.1f} s), "
                f"floor {floor['ms']:.1f} ms",
                flush=True,
            )
            split = kernel_split(forward)
            print(f"  kernel sum {sum(split.values()):.1f} ms vs wall {eager:.1f} ms (gaps = launch/sync)")
            if args.graphs:
                stream = torch.cuda.Stream()
                stream.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(stream):
                    for _ in range(2):
                        forward()
                torch.cuda.current_stream().wait_stream(stream)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    out = forward()
                replay = gpu_ms(graph.replay)
                ref = forward()
                diff = (out.float() - ref.float()).abs().max().item()
                print(f"  CUDA graph replay {replay:.1f} ms/forward (max |diff| {diff:.2e})", flush=True)
                del graph, out


if __name__ == "__main__":
    main()
