"""Where the folded conv biases change the Wan VAE's frames on the GPU (CUDA, a minute).

    python bench/vae_fold_check.py

bench/vae_decode.py found the folded decode 1 bf16 step off the unfused one on an H100 (max 0.0078),
where the CPU backend gives identical frames. This runs the steady-state block decode of
bench/vae_decode.py once with folded chains, keeps every residual block's input, and runs each block
again on that input piece by piece, folded against PyTorch's order (cuDNN conv, separate bias add):
  conv1: the first conv's output, bias added by with_bias (the chain's rounding) vs by the conv;
  chain: the second conv's padded input, norm_silu_after_biased vs norm_silu_after on the biased x;
  conv2: the second conv on those two padded inputs;
  sum: residual_sum vs the two eager adds;
  block: the whole block, folded vs not.
Prints one JSON line per residual block: differing elements and max abs difference of each piece.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.vae_decode import LATENT_HW  # noqa: E402
from dysink_cli.benchmarks.networks import random_networks  # noqa: E402
from dysink_cli.model.vae_blocks import CACHE_T, ResidualBlock, padded_front  # noqa: E402
from dysink_cli.model.vae_chains import with_bias  # noqa: E402


def differ(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [int((a != b).sum().item()), (a.float() - b.float()).abs().max().item()]


def pieces(block: ResidualBlock, x: torch.Tensor, slots: tuple) -> dict[str, list[float]]:
    ch, conv1, conv2, norm2 = block.chains, block.residual[2], block.residual[6], block.residual[3]
    found: dict[str, list[float]] = {}
    block.chains = replace(ch, fold_biases=True)
    folded = block(x, slots)[0]
    block.chains = replace(ch, fold_biases=False)
    found["block"] = differ(folded, block(x, slots)[0])
    block.chains = ch
    h = block.shortcut(x)
    padded1 = ch.norm_silu_after(padded_front(x, slots[0], CACHE_T), x, block.residual[0].gamma,
                                 block.residual[0].scale)  # fmt: skip
    plain = conv1.padded_forward(padded1, biased=False)
    biased = conv1.padded_forward(padded1)
    found["conv1"] = differ(with_bias(plain, conv1.bias), biased)
    front = padded_front(plain, slots[1], CACHE_T)
    chain_folded = ch.norm_silu_after_biased(front, plain, conv1.bias, norm2.gamma, norm2.scale)
    chain_plain = ch.norm_silu_after(front, biased, norm2.gamma, norm2.scale)
    found["chain"] = differ(chain_folded, chain_plain)
    out_plain = conv2.padded_forward(chain_plain)
    out_folded = with_bias(conv2.padded_forward(chain_folded, biased=False), conv2.bias)
    found["conv2"] = differ(out_folded, out_plain)
    found["sum"] = differ(ch.residual_sum(conv2.padded_forward(chain_plain, biased=False), conv2.bias, h),
                          out_plain + h)  # fmt: skip
    return found


def main() -> None:
    torch.backends.cudnn.benchmark = True
    vae = random_networks(torch.device("cuda"), torch.bfloat16).vae
    vae.use_channels_last()
    vae.use_compiled_ops()
    gen = torch.Generator(device="cuda").manual_seed(0)
    z = torch.randn(1, 7, 16, *LATENT_HW, device="cuda", dtype=torch.bfloat16, generator=gen)
    seen: list[tuple[str, ResidualBlock, torch.Tensor, tuple]] = []

    def keep(name: str):
        return lambda module, args: seen.append((name, module, args[0].clone(), args[1]))

    blocks = [(n, m) for n, m in vae.named_modules() if isinstance(m, ResidualBlock)]
    handles = [m.register_forward_pre_hook(keep(n)) for n, m in blocks]
    with torch.no_grad():
        state = vae.decode_chunk(z[:, :1], vae.decoder_state())[1]
        state = vae.decode_chunk(z[:, 1:4], state)[1]
        seen.clear()
        vae.decode_chunk(z[:, 4:7], state)
        for handle in handles:
            handle.remove()
        for name, block, x, slots in seen:
            if name.startswith("decoder"):
                print(json.dumps({"module": name, **pieces(block, x, slots)}), flush=True)


if __name__ == "__main__":
    main()
