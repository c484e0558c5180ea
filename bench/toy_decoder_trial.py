"""Does more training of the toy VAE's decoder alone sharpen what it draws? (issue 13; CPU or GPU)

The encoder stays as shipped, so the latent space, its statistics and the DiT are untouched: only
the decoder (and its input conv) learn, on fresh world clips with the VAE stage's loss
(toy/train_vae.py: detail-weighted L1 + L2 + edges, a random pre-roll of the causal caches), from a
sample of the frozen encoder's posterior. Writes the shipped file with the decoder replaced:
  python bench/toy_decoder_trial.py --out /tmp/dec.safetensors --minutes 20 [--batch 2 2 3]
  python bench/toy_vae_ceiling.py --weights /tmp/dec.safetensors
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks  # noqa: E402
from dysink_cli.toy.train_vae import vae_step  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--batch", type=int, nargs=3, default=(2, 2, 3), help="worlds, clips each, latents")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=0, help="steps of a linear warm-up to --lr")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(2)
    _, vae, _, _, _ = load_toy_networks(device, torch.float32)
    vae.train()
    learns = {name for name, _ in vae.named_parameters() if name.startswith(("decoder.", "conv2."))}
    for name, p in vae.named_parameters():
        p.requires_grad_(name in learns)
    opt = torch.optim.AdamW([p for p in vae.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    start, step = time.monotonic(), 0
    while time.monotonic() - start < 60 * args.minutes:
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / max(1, args.warmup))
        parts = vae_step(vae, opt, rng, gen, tuple(args.batch), device, (128, 96))
        step += 1
        if step % 10 == 0:
            losses = " ".join(f"{k} {v:.4f}" for k, v in parts.items())
            print(f"step {step} {time.monotonic() - start:.0f} s {losses}", flush=True)
    tensors = load_file(str(WEIGHTS_PATH))
    for name, p in vae.state_dict().items():
        if name in learns:
            tensors[f"vae.{name}"] = p.detach().to("cpu", tensors[f"vae.{name}"].dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out), metadata={"format": "pt"})
    print(f"{step} steps; wrote {args.out}")


if __name__ == "__main__":
    main()
