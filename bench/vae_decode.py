"""The streaming Wan VAE decode of one block against its conv floor, before/after in one run (H200).

    python bench/vae_decode.py [--repeats 12]

Full-size Wan VAE, random bf16 weights, channels-last, compiled norm chains, as the render runs it.
Times (CUDA events, median) one steady-state 3-latent decode (12 frames at 832x480, after the first
latent and one block) and the reference's standalone descriptor decode of a block (3 latents, fresh
state, 9 frames), with the norm chains written after the cached frames in one pass ("fused", the
default) and with a separate concatenation ("unfused", the code before); checks that both give the
same frames. The floor is the decode's convolution FLOPs (counted at F.conv2d/F.conv3d) at the bf16 GEMM rate
measured here. Prints one JSON line. It times the tree it sits in: to time an older commit,
`git archive C dysink_cli | tar -x -C .old`, copy bench/ there and run `.old/bench/vae_decode.py`
(trees before c63d196 have no fused chains: one variant); `--save-frames` lets the trees' frames be
compared. A last timing runs the fused decode with every convolution's bias removed: the bound on
folding the bias adds (one elementwise pass per convolution) into the fused passes around them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.forward_profile import VAE_CATEGORIES, gpu_ms, kernel_split  # noqa: E402
from dysink_cli.benchmarks.networks import random_networks  # noqa: E402
from dysink_cli.model import vae_blocks  # noqa: E402
from dysink_cli.model.compiling import compiled  # noqa: E402
from dysink_cli.model.vae import WanVAE  # noqa: E402

LATENT_HW = (60, 104)  # 832x480


def conv_flops(fn) -> float:
    """FLOPs of every convolution one call of fn runs (2 x output elements x input taps), counted at
    F.conv2d/F.conv3d, so convolutions called without their module (the fused norm chains call
    Conv3d.forward directly, which forward hooks miss) count too."""
    total = [0.0]
    originals = {name: getattr(F, name) for name in ("conv2d", "conv3d")}

    def counting(original):
        def call(x: torch.Tensor, weight: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            out = original(x, weight, *args, **kwargs)
            total[0] += 2.0 * out.numel() * math.prod(weight.shape[1:])
            return out

        return call

    for name, original in originals.items():
        setattr(F, name, counting(original))
    try:
        fn()
    finally:
        for name, original in originals.items():
            setattr(F, name, original)
    return total[0]


def gemm_tflops(repeats: int) -> float:
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    return 2 * 8192**3 / gpu_ms(lambda: a @ b, repeats + 1) / 1e9


def set_fused(vae: WanVAE, fused: bool, compiled_fns: dict[bool, tuple]) -> None:
    for module in vae.modules():
        if hasattr(module, "fns"):
            module.fns = compiled_fns[fused]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--save-frames", help="write the decoded block's frames here (to compare trees)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    vae = random_networks(torch.device("cuda"), torch.bfloat16).vae
    vae.use_channels_last()
    vae.use_compiled_ops()
    fused_fns = next((m.fns for m in vae.modules() if hasattr(m, "fns")), None)  # None before c63d196
    plain = compiled(vae_blocks.rms_norm_silu, dynamic=True)  # the render's recompile limit

    def plain_after(front, x, gamma, scale):
        return torch.cat([front, plain(x, gamma, scale)], dim=2)

    fns = {True: fused_fns, False: (plain, plain_after)}
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(1, 7, 16, *LATENT_HW, device="cuda", dtype=torch.bfloat16, generator=gen)  # 1 + 3 + 3
    result: dict[str, object] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    frames: dict[bool, torch.Tensor] = {}
    with torch.no_grad():
        # the steady state: the lone first latent, one 3-latent block, then the timed block
        first_state = vae.decode_chunk(z[:, :1], vae.decoder_state())[1]
        first_state = vae.decode_chunk(z[:, 1:4], first_state)[1]
        block = z[:, 4:7]
        result["conv_gflop_block"] = conv_flops(lambda: vae.decode_chunk(block, first_state)) / 1e9
        result["conv_gflop_descriptor"] = conv_flops(lambda: vae.decode(block)) / 1e9
        result["gemm_tflops"] = gemm_tflops(args.repeats)
        result["floor_ms_block"] = result["conv_gflop_block"] / result["gemm_tflops"]
        result["floor_ms_descriptor"] = result["conv_gflop_descriptor"] / result["gemm_tflops"]
        n = args.repeats + 1  # gpu_ms leaves the first call out
        variants = (False, True, False, True) if fused_fns else (False, False)  # the second run counts
        for fused in variants:
            set_fused(vae, fused, fns)
            frames[fused] = vae.decode_chunk(block, first_state)[0]
            name = "fused" if fused else "unfused"
            result[f"{name}_block_ms"] = gpu_ms(lambda: vae.decode_chunk(block, first_state), n)
            result[f"{name}_descriptor_ms"] = gpu_ms(lambda: vae.decode(block), n)
        print(json.dumps(result), flush=True)
        for fused in dict.fromkeys(variants):
            set_fused(vae, fused, fns)
            print(f"kernels, {'fused' if fused else 'unfused'}:", flush=True)
            result[f"{'fused' if fused else 'unfused'}_split_ms"] = kernel_split(
                lambda: vae.decode_chunk(block, first_state), VAE_CATEGORIES
            )
        if fused_fns:  # the bound on folding the biases away: the fused decode with none (timing only)
            biases = {m: m.bias for m in vae.modules() if isinstance(m, nn.Conv3d | nn.Conv2d)}
            for m in biases:
                m.bias = None
            result["fused_no_bias_block_ms"] = gpu_ms(lambda: vae.decode_chunk(block, first_state), n)
            print("kernels, fused, convolutions without bias:", flush=True)
            result["fused_no_bias_split_ms"] = kernel_split(
                lambda: vae.decode_chunk(block, first_state), VAE_CATEGORIES
            )
            for m, bias in biases.items():
                m.bias = bias
    if fused_fns:
        diff = (frames[True] - frames[False]).abs().max().item()
        result["max_abs_diff_fused_vs_unfused"] = diff
        result["frames_identical"] = bool(torch.equal(frames[True], frames[False]))
    if args.save_frames:
        torch.save(frames[bool(fused_fns)].cpu(), args.save_frames)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
