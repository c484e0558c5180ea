"""The streaming Wan VAE decode of one block against its conv floor, before/after in one run (H200).

    python bench/vae_decode.py [--repeats 12]

Full-size Wan VAE, random bf16 weights, channels-last, compiled norm chains, as the render runs it.
Times (CUDA events, median) one steady-state 3-latent decode (12 frames at 832x480, after the first
latent and one block) and the reference's standalone descriptor decode of a block (3 latents, fresh
state, 9 frames) with three chain sets: "unfused" (compiled norm chains, then a separate
concatenation: the code before c63d196), "fused" (the chains written after the cached frames in one
pass) and "folded" (fused, the residual blocks' conv biases added inside the chains instead of by
PyTorch after each convolution; not the default: 1 bf16 step off on an H100); checks that all give
the same frames (it reports whether they do). The floor is the decode's convolution FLOPs (counted
at F.conv2d/F.conv3d) at the bf16 GEMM rate measured here.
Prints one JSON line. It times the tree it sits in: to time an older commit, `git archive C
dysink_cli | tar -x -C .old`, copy bench/ there and run `.old/bench/vae_decode.py` (a tree without
vae_chains times its one variant); `--save-frames` lets the trees' frames be compared. A last timing
runs the folded decode with every convolution's bias removed: the bound on folding every bias add
(one elementwise pass per convolution) into the passes around it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.forward_profile import VAE_CATEGORIES, gpu_ms, kernel_split  # noqa: E402
from dysink_cli.benchmarks.networks import random_networks  # noqa: E402
from dysink_cli.model import vae_chains  # noqa: E402
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


def variants(vae: WanVAE) -> dict[str, object]:
    """The chain sets to time, by name, for a tree with `chains` (vae_chains); {} for one without
    (before c63d196 the chains were plain compiled norms, one variant)."""
    chains = next((m.chains for m in vae.modules() if hasattr(m, "chains")), None)
    if chains is None:
        return {}
    plain = compiled(vae_chains.rms_norm_silu, dynamic=True)  # the render's recompile limit

    def plain_after(front, x, gamma, scale):
        return torch.cat([front, plain(x, gamma, scale)], dim=2)

    unfolded = replace(chains, fold_biases=False)
    return {"unfused": replace(unfolded, norm_silu=plain, norm_silu_after=plain_after), "fused": unfolded,
            "folded": replace(chains, fold_biases=True)}


def use(vae: WanVAE, chains: object) -> None:
    for module in vae.modules():
        if hasattr(module, "chains"):
            module.chains = chains


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--save-frames", help="write the decoded block's frames here (to compare trees)")
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    vae = random_networks(torch.device("cuda"), torch.bfloat16).vae
    vae.use_channels_last()
    vae.use_compiled_ops()
    sets = variants(vae)
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(1, 7, 16, *LATENT_HW, device="cuda", dtype=torch.bfloat16, generator=gen)  # 1 + 3 + 3
    result: dict[str, object] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__}
    frames: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        # the steady state: the lone first latent, one 3-latent block, then the timed block
        first_state = vae.decode_chunk(z[:, :1], vae.decoder_state())[1]
        first_state = vae.decode_chunk(z[:, 1:4], first_state)[1]
        block = z[:, 4:7]

        def decode_block() -> torch.Tensor:
            return vae.decode_chunk(block, first_state)[0]

        result["conv_gflop_block"] = conv_flops(decode_block) / 1e9
        result["conv_gflop_descriptor"] = conv_flops(lambda: vae.decode(block)) / 1e9
        result["gemm_tflops"] = gemm_tflops(args.repeats)
        result["floor_ms_block"] = result["conv_gflop_block"] / result["gemm_tflops"]
        result["floor_ms_descriptor"] = result["conv_gflop_descriptor"] / result["gemm_tflops"]
        n = args.repeats + 1  # gpu_ms leaves the first call out
        names = list(sets) or ["plain"]
        for name in names + names:  # the second round counts (the first compiles and tunes)
            if sets:
                use(vae, sets[name])
            frames[name] = decode_block()
            result[f"{name}_block_ms"] = gpu_ms(decode_block, n)
            result[f"{name}_descriptor_ms"] = gpu_ms(lambda: vae.decode(block), n)
        print(json.dumps(result), flush=True)
        for name in names:
            if sets:
                use(vae, sets[name])
            print(f"kernels, {name}:", flush=True)
            result[f"{name}_split_ms"] = kernel_split(decode_block, VAE_CATEGORIES)
        if sets:  # the bound on folding every bias away: the folded decode with none (timing only)
            biases = {m: m.bias for m in vae.modules() if isinstance(m, nn.Conv3d | nn.Conv2d)}
            for m in biases:
                m.bias = None
            result["no_bias_block_ms"] = gpu_ms(decode_block, n)
            print("kernels, folded, convolutions without bias:", flush=True)
            result["no_bias_split_ms"] = kernel_split(decode_block, VAE_CATEGORIES)
            for m, bias in biases.items():
                m.bias = bias
    reference = frames[names[0]]
    for name in names[1:]:
        result[f"max_abs_diff_{name}_vs_{names[0]}"] = (frames[name] - reference).abs().max().item()
        result[f"frames_identical_{name}_vs_{names[0]}"] = bool(torch.equal(frames[name], reference))
    if args.save_frames:
        torch.save(frames[names[-1]].cpu(), args.save_frames)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
