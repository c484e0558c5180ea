"""Is there a camera in the toy DiT's words to amplify? (issue 13; CPU, minutes)

    python3 bench/toy_guidance_probe.py [--weights W] [--scales 0 1 2] [--blocks 3] [--euler N]

The toy's renders open with a block whose motion is its own choice and then continue what they drew
(bench/RESULTS.md). Self-Forcing's DMD guides its teacher's score, so the distilled generator follows
the words more than the plain conditional score would; the toy's guided DMD ("toy-fine-flow",
`train_dmd.contrast_caption`) needs a teacher whose score moves with the camera word at all. This
probe asks that of a DiT directly, at inference: each of the sampler's 4 steps uses the flow
f(c) + s (f(c) - f(c')), c the prompt "a THEME landscape, the camera pans P" and c' the same with the
opposite pan, and the model draws `--blocks` blocks from the start of a video as a render does (each
attending to the clean K/V of the two before it). Printed per scale s: the speed along P of every
drawn block (px per frame, the world's is 2.0), for the six required themes x four pans, and the
share of blocks within 20 % of 2.0 and at >= 1.0. s = 0 is the shipped sampler. `--euler N`
integrates N deterministic Euler steps of the warped schedule instead (a flow model, as a DMD teacher
is, draws its blocks so; its 4-step draws are the blurred mean).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.toy_motion_probe import OPPOSITE  # noqa: E402
from dysink_cli.engine.sampler import flow_to_x0, renoise  # noqa: E402
from dysink_cli.engine.schedule import NUM_TRAIN_TIMESTEPS  # noqa: E402
from dysink_cli.model.rope import wan_frequencies  # noqa: E402
from dysink_cli.toy.adherence import camera_velocity, speed_along  # noqa: E402
from dysink_cli.toy.data import FRAMES_PER_BLOCK, HEIGHT, WIDTH  # noqa: E402
from dysink_cli.toy.dit_context import dit_call, join_context  # noqa: E402
from dysink_cli.toy.evaluate import REQUIRED  # noqa: E402
from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks  # noqa: E402
from dysink_cli.toy.train_dit import SHIFT, Schedule  # noqa: E402

SPEED = 2.0
VAE_STRIDE_PX = 8  # the toy VAE's spatial downsampling


def euler_sigmas(steps: int) -> torch.Tensor:
    """steps + 1 sigmas from 1 to 0, warped by the training's shift as the sampler's are."""
    s = torch.linspace(1.0, 0.0, steps + 1)
    return SHIFT * s / (1 + (SHIFT - 1) * s)


@torch.no_grad()
def guided_speeds(
    nets, theme: str, pan: str, scale: float, blocks: int, seed: int, euler: int = 0
) -> list[float]:
    """Speeds along `pan` of `blocks` blocks drawn from the start of a video with contrast guidance
    (the shipped 4-step sampler, or `euler` Euler steps)."""
    dit, vae, t5, tokenizer, _ = nets
    ids, mask = tokenizer([f"a {theme} landscape, the camera pans {p}" for p in (pan, OPPOSITE[pan])])
    text, contrast = (dit.encode_text(t5.encode(i[None], m[None])) for i, m in zip(ids, mask, strict=True))
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    schedule, gen = Schedule.shipped(), torch.Generator().manual_seed(seed)
    zero, state, clean, speeds = torch.zeros(1), vae.decoder_state(), [], []
    for j in range(blocks):
        starts, ctx = torch.tensor([FRAMES_PER_BLOCK * j]), join_context(clean[-2:])
        shape = (1, FRAMES_PER_BLOCK, dit.cfg.in_dim, HEIGHT // VAE_STRIDE_PX, WIDTH // VAE_STRIDE_PX)
        x = torch.randn(shape, generator=gen)
        call = (starts, freqs, ctx)

        def guided(x: torch.Tensor, t: torch.Tensor, call=call) -> torch.Tensor:  # noqa: ANN001
            flow = dit_call(dit, x, t, text, *call)[0]
            return flow + scale * (flow - dit_call(dit, x, t, contrast, *call)[0]) if scale else flow

        if euler:
            sigmas = euler_sigmas(euler)
            for k in range(euler):
                x = x + (sigmas[k + 1] - sigmas[k]) * guided(x, (NUM_TRAIN_TIMESTEPS * sigmas[k]).expand(1))
            pred = x
        for s in range(0 if euler else len(schedule.timesteps)):
            pred = flow_to_x0(x, guided(x, schedule.timesteps[s].expand(1)), schedule.sigmas[s])
            if s + 1 < len(schedule.timesteps):
                x = renoise(pred, torch.randn(x.shape, generator=gen), schedule.sigmas[s + 1])
        clean.append(dit_call(dit, pred, zero, text, starts, freqs, ctx)[1])
        frames, state = vae.decode_chunk(pred, state)
        speeds.append(speed_along(camera_velocity((frames[0] * 0.5 + 0.5).clamp(0, 1)), pan))
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.0, 1.0, 2.0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--euler", type=int, default=0, help="Euler steps instead of the 4-step sampler")
    args = parser.parse_args()
    torch.set_num_threads(2)
    nets = load_toy_networks("cpu", torch.float32, args.weights)
    for scale in args.scales:
        drawn: list[list[float]] = []
        for seed, theme in enumerate(REQUIRED):
            for pan in OPPOSITE:
                drawn.append(guided_speeds(nets, theme, pan, scale, args.blocks, seed, args.euler))
                print(f"s {scale:3.1f}  {theme:10s}  {pan:5s}  " + " ".join(f"{v:5.2f}" for v in drawn[-1]))
        for j in range(args.blocks):
            column = [row[j] for row in drawn]
            near = sum(abs(v - SPEED) <= 0.2 * SPEED for v in column)
            print(
                f"s {scale:3.1f}  block {j}: median {statistics.median(column):5.2f}, within 20 % {near} of "
                f"{len(column)}, >= 1.0 {sum(v >= 1.0 for v in column)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
