"""CPU evaluation of the toy model: `python -m dysink_cli.toy.evaluate [--weights PATH] [--blocks N]`.

Renders prompts with the engine's block loop (DySink defaults: 9-frame window, top-2 memory,
per-entry gate 0.8, shipped sampler), streams the VAE decode, describes blocks with PE-Core, and
reports: wall time (loading included), mean colour vs each theme's ground-truth mean (theme
accuracy), content shift per frame by phase correlation vs the prompt's motion, and PSNR of a
block predicted from two ground-truth blocks of context.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from torch import Tensor

from dysink_cli.engine.generator import BlockGenerator
from dysink_cli.engine.loop_spec import LoopSpec
from dysink_cli.engine.memory.descriptors import describe_block
from dysink_cli.engine.noise import SeededNoise
from dysink_cli.model.rope import wan_frequencies
from dysink_cli.toy.captions import random_caption
from dysink_cli.toy.data import random_start
from dysink_cli.toy.dit_context import dit_call
from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks
from dysink_cli.toy.train_dit import Schedule, denoise_from
from dysink_cli.toy.world import THEMES, World, camera_path, velocity

LATENT_HW = (12, 16)


def phase_shift(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(dx, dy) that moves grey frame a (H, W) onto b, by phase correlation (integer peak)."""
    fa, fb = torch.fft.fft2(a - a.mean()), torch.fft.fft2(b - b.mean())
    cross = fb * fa.conj()
    corr = torch.fft.ifft2(cross / cross.abs().clamp_min(1e-9)).real
    h, w = corr.shape
    idx = int(corr.argmax())
    dy, dx = divmod(idx, w)
    return float(dx - w if dx > w // 2 else dx), float(dy - h if dy > h // 2 else dy)


def theme_means(samples: int = 8) -> Tensor:
    """(themes, 3) mean colour of ground-truth views of every theme."""
    rng = random.Random(0)
    out = []
    for theme in THEMES:
        xy = torch.tensor([random_start(rng) for _ in range(samples)], dtype=torch.float64)
        out.append(World(theme, 7).render(xy).mean(dim=(0, 2, 3)))
    return torch.stack(out)


@torch.no_grad()
def render_prompt(nets, prompt: str, blocks: int, seed: int) -> tuple[Tensor, dict]:
    """Frames (T, 3, H, W) in [0, 1] of a DySink render of `prompt`, and its decision stats."""
    dit, vae, t5, tokenizer, pe = nets
    ids, mask = tokenizer([prompt])
    text_kv = dit.encode_text(t5.encode(ids, mask))
    spec = LoopSpec(policy="dysink", window_frames=9, capacity_frames=15, query_blocks=3)
    gen = BlockGenerator(dit, spec, SeededNoise(seed), LATENT_HW)
    gen.set_prompt(text_kv)
    state, frames, gated, retrieved = vae.decoder_state(), [], 0, 0
    for _ in range(blocks):
        out = gen.next_block()
        decoded, state = vae.decode_chunk(out.latents, state)
        frames.append(decoded[0])
        gen.finish_block(describe_block(out.latents, vae, pe))
        for rec in out.record.get("gate", []):
            retrieved += len(rec["entries"])
            gated += sum(e["gated_off"] for e in rec["entries"])
    gen.close()
    return (torch.cat(frames) * 0.5 + 0.5).clamp(0, 1), {"gated_off": gated, "retrieved": retrieved}


def motion_score(frames: Tensor, motion: str) -> float:
    """Fraction of consecutive frame pairs whose content shift points against the camera's motion."""
    vx, vy = velocity(motion)
    grey = frames.mean(dim=1)
    good = 0
    for a, b in zip(grey[1:-1], grey[2:], strict=True):
        dx, dy = phase_shift(a, b)
        if motion == "still":
            good += abs(dx) + abs(dy) < 1
        else:
            good += (dx * -vx + dy * -vy) > 0
    return good / max(1, len(grey) - 2)


@torch.no_grad()
def continuation_psnr(nets, theme: str, seed: int) -> float:
    """PSNR (dB) of block 2 sampled given ground-truth blocks 0 and 1 (clean K/V), vs the truth."""
    dit, vae, t5, tokenizer, _ = nets
    rng = random.Random(seed)
    motion = rng.choice(("left", "right", "up", "down"))
    path = camera_path(random_start(rng), [(motion, 33)])
    video = World(theme, seed).render(path).transpose(0, 1)[None] * 2 - 1  # (1, 3, 33, H, W)
    latents = vae.encode(video)  # (1, 9, 16, h, w)
    ids, mask = tokenizer([random_caption(rng, theme, motion)])
    text_kv = dit.encode_text(t5.encode(ids, mask))
    freqs, schedule = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta), Schedule.shipped()
    zero = torch.zeros(1)
    _, kv0 = dit_call(dit, latents[:, 0:3], zero, text_kv, torch.tensor([0]), freqs)
    _, kv1 = dit_call(dit, latents[:, 3:6], zero, text_kv, torch.tensor([3]), freqs, kv0)
    ctx = [(torch.cat([a[0], b[0]], 1), torch.cat([a[1], b[1]], 1)) for a, b in zip(kv0, kv1, strict=True)]
    noise_only = torch.zeros_like(latents[:, 6:9])
    pred = denoise_from(
        dit,
        noise_only,
        0,
        text_kv,
        torch.tensor([6]),
        freqs,
        ctx,
        schedule,
        torch.Generator().manual_seed(seed),
    )
    ours = vae.decode(torch.cat([latents[:, :6], pred], dim=1))[:, -12:]
    truth = video[:, :, -12:].transpose(1, 2)
    return float(-10 * torch.log10((ours - truth).square().mean() / 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dysink_cli.toy.evaluate", description=__doc__)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--blocks", type=int, default=7)
    parser.add_argument("--themes", type=int, default=len(THEMES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    nets = load_toy_networks("cpu", torch.float32, args.weights)
    prompt = "a snowy field, the camera pans right"
    frames, stats = render_prompt(nets, prompt, args.blocks, 0)
    timed = time.perf_counter() - start
    means = theme_means()
    report = {"render_seconds_incl_load": round(timed, 2), "frames": int(frames.shape[0]), "demo": {
        "prompt": prompt, "mean_rgb": [round(v, 3) for v in frames.mean(dim=(0, 2, 3)).tolist()],
        "motion_ok": round(motion_score(frames, "right"), 3), **stats}}  # fmt: skip
    rows, motions = [], ("right", "left", "up", "down", "still")
    for i, theme in enumerate(THEMES[: args.themes]):
        motion = motions[i % len(motions)]
        caption = random_caption(random.Random(i), theme, motion)
        frames, stats = render_prompt(nets, caption, args.blocks, i + 1)
        mean = frames.mean(dim=(0, 2, 3))
        nearest = THEMES[int((means - mean).norm(dim=1).argmin())]
        rows.append({
            "theme": theme, "motion": motion, "caption": caption, "nearest_theme": nearest,
            "colour_error": round(float((means[THEMES.index(theme)] - mean).norm()), 3),
            "motion_ok": round(motion_score(frames, motion), 3),
            "psnr_block2": round(continuation_psnr(nets, theme, i), 2),
            **stats,
        })  # fmt: skip
    report["themes"] = rows
    report["theme_accuracy"] = sum(r["nearest_theme"] == r["theme"] for r in rows) / max(1, len(rows))
    report["motion_accuracy"] = sum(r["motion_ok"] for r in rows) / max(1, len(rows))
    report["mean_psnr_block2"] = sum(r["psnr_block2"] for r in rows) / max(1, len(rows))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
