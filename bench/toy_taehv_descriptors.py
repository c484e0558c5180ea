"""DySink's retrieval with TAEHV-decoded descriptor frames against the reference Wan-VAE decode, on
the toy world (issue 15, item 2: `dysink.descriptor_decoder = "taehv"`).

1. Distil a toy-size TAEHV decoder (the release graph, narrower) from the shipped toy VAE: toy-world
   clips of one block (9 frames), encoded by the toy VAE; the TAEHV decoder learns the VAE's decode
   of those latents, block by block as descriptors decode them (a fresh stream each), `--minutes`.
2. Render `--seconds` of each required theme with the toy's DySink loop (the reference descriptors
   steer the render) and describe every block twice: PE-Core on the Wan VAE's decode of the block
   alone (the reference) and on the TAEHV decode.
3. Feed each descriptor stream to its own `DySinkMemory` (the real dedup, exclusion and top-k rules)
   over the same blocks and compare what they retrieve, block by block.

    python3 bench/toy_taehv_descriptors.py [--minutes 10] [--seconds 20] [--device cpu] [--json F]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.benchmarks.agreement import steered_render  # noqa: E402
from dysink_cli.config import resolve_config  # noqa: E402
from dysink_cli.engine.generator import BlockGenerator  # noqa: E402
from dysink_cli.engine.memory.descriptors import describe_block, describe_frames  # noqa: E402
from dysink_cli.engine.noise import SeededNoise  # noqa: E402
from dysink_cli.model.taehv import TAEHV, TAEHVConfig, _run  # noqa: E402
from dysink_cli.render.assemble import loop_spec  # noqa: E402
from dysink_cli.toy.data import vae_clips  # noqa: E402
from dysink_cli.toy.evaluate import LATENT_HW, REQUIRED  # noqa: E402
from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks  # noqa: E402

TOY_TAEHV = dict(decoder_widths=(64, 32, 16), encoder_width=16)  # the release graph, narrower


def decode_with_grad(taehv: TAEHV, latents: torch.Tensor) -> torch.Tensor:
    """TAEHV.decode (a fresh stream, start-up frames trimmed) with autograd, for training."""
    frames, _ = _run(taehv.decoder, latents, dict.fromkeys(taehv.decoder_state().memory))
    return frames[:, taehv.cfg.frames_to_trim :]


def distil(
    nets, minutes: float, device: torch.device, seed: int = 0, data_share: float = 0.3  # noqa: ANN001
) -> tuple[TAEHV, dict]:
    """A toy TAEHV decoder trained on the toy VAE's decodes of one-block clips. The VAE's targets cost
    4x a training step, so the first `data_share` of the time draws a pool of batches (training on
    each as it comes) and the rest trains on batches drawn from that pool."""
    _, vae, *_ = nets
    torch.manual_seed(seed)
    taehv = TAEHV(TAEHVConfig(**TOY_TAEHV)).to(device)
    opt = torch.optim.Adam(taehv.decoder.parameters(), lr=1e-3)
    rng, start, losses, pool = random.Random(seed), time.monotonic(), [], []
    while (elapsed := time.monotonic() - start) < 60 * minutes:
        if elapsed < data_share * 60 * minutes or not pool:
            with torch.no_grad():
                clips = vae_clips(rng, 4, 2, 9, device)  # (8, 3, 9, H, W) in [-1, 1]
                latents = vae.encode(clips)  # (8, 3, C, h, w), the DiT's normalised latents
                pool.append((latents, (vae.decode(latents).clamp(-1, 1) * 0.5 + 0.5).float()))
            latents, target = pool[-1]
        else:
            latents, target = pool[rng.randrange(len(pool))]
        frames = decode_with_grad(taehv, latents)
        loss = F.mse_loss(frames, target) + 0.5 * F.l1_loss(frames, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    taehv.eval().requires_grad_(False)
    summary = {"steps": len(losses), "pool_batches": len(pool), "first_loss": losses[0]}
    return taehv, summary | {"final_loss": statistics.mean(losses[-20:])}


@torch.no_grad()
def render_and_describe(nets, taehv: TAEHV, prompt: str, blocks: int, seed: int) -> dict:  # noqa: ANN001
    """One DySink render steered by the reference descriptors; both descriptors of every block."""
    dit, vae, t5, tokenizer, pe = nets
    ids, mask = tokenizer([prompt])
    device = next(dit.parameters()).device
    gen = BlockGenerator(dit, loop_spec(resolve_config("toy")), SeededNoise(seed), LATENT_HW)
    gen.set_prompt(dit.encode_text(t5.encode(ids.to(device), mask.to(device))))
    psnr: list[float] = []

    def tiny_descriptor(latents: torch.Tensor) -> torch.Tensor:
        reference = (vae.decode(latents).clamp(-1, 1) * 0.5 + 0.5).float()
        tiny = taehv.decode(latents)
        psnr.append(float(10 * torch.log10(1 / (tiny - reference).square().mean())))
        return describe_frames(tiny[0], pe)

    try:
        result = steered_render(gen, blocks, lambda z: describe_block(z, vae, pe), tiny_descriptor)
    finally:
        gen.close()
    return result | {"taehv_psnr_vs_wan_db": statistics.mean(psnr)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=10.0, help="distillation time")
    p.add_argument("--seconds", type=float, default=20.0, help="render length per theme")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    nets = load_toy_networks(args.device, torch.float32, WEIGHTS_PATH)
    taehv, training = distil(nets, args.minutes, device)
    print(json.dumps({"distillation": training}), flush=True)
    blocks = max(1, round((args.seconds * 16 + 3) / 12))
    rows = {}
    for i, (theme, motion) in enumerate(REQUIRED.items()):
        rows[theme] = render_and_describe(nets, taehv, f"{theme}, the camera pans {motion}", blocks, i)
        print(json.dumps({theme: rows[theme]}), flush=True)
    summary = {k: statistics.mean(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    report = {"taehv": TOY_TAEHV, "distillation": training, "themes": rows, "mean": summary}
    print(json.dumps({"mean": summary}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
