"""Does the toy DiT continue a pan its context shows, and does its prompt steer it? (CPU, minutes)

    python3 bench/toy_motion_probe.py [--weights W]

For each required theme and each pan (left, right, up, down), renders the exact first 33 frames of
a video (3 blocks), encodes them, and lets the model draw block 3 with the shipped 4-step sampler
from pure noise, attending to the clean K/V of the true blocks 1-2 (teacher-forced context, the
training's "dit" case). The camera velocity of its 12 frames (phase correlation, decoded after the
true context) is printed against the ground truth's, with the prompt naming the context's pan
("same") and naming the opposite one ("opposite"). A model that continues its context's motion
moves in "same" and in "opposite" alike; one that follows the prompt reverses in "opposite"; one
that learnt no motion holds still in both. This separates "the DiT never learnt to pan" from "the
free-running renders lose the pan" (toy/evaluate.py measures those).

`--rollout N`: after the two true blocks, the model draws N blocks in a row, each attending to the
clean K/V of the two before it (its own from the third on; no sink, no memory), and the speed of
each drawn block is printed: whether a pan survives the model's own context, block after block.

`--soften SIGMA`: the second true block is blurred by SIGMA latent pixels (toy/degrade.py) before the
model draws after it: whether a context as soft as the model's own draws still carries the pan.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dysink_cli.model.rope import wan_frequencies  # noqa: E402
from dysink_cli.toy.adherence import camera_velocity, speed_along  # noqa: E402
from dysink_cli.toy.data import FRAMES_PER_BLOCK, random_start  # noqa: E402
from dysink_cli.toy.degrade import blur  # noqa: E402
from dysink_cli.toy.dit_context import dit_call, join_context  # noqa: E402
from dysink_cli.toy.evaluate import REQUIRED  # noqa: E402
from dysink_cli.toy.models import WEIGHTS_PATH, load_toy_networks  # noqa: E402
from dysink_cli.toy.train_dit import Schedule, sample_steps  # noqa: E402
from dysink_cli.toy.world import World, camera_path  # noqa: E402

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
FRAMES = 33  # 9 + 12 + 12: three blocks from the start of a video


@torch.no_grad()
def drawn_speeds(
    nets, theme: str, motion: str, prompt_motion: str, blocks: int, seed: int, soften: float = 0.0
) -> tuple[list[float], float]:
    """Speeds along `motion` (px per frame) of `blocks` blocks the model draws in a row after the two
    true blocks of a pan (each attending to the two before it), prompted with `prompt_motion`, and
    the truth's speed in block 3."""
    dit, vae, t5, tokenizer, _ = nets
    path = camera_path(random_start(random.Random(seed)), [(motion, FRAMES)])
    truth = World(theme, seed).render(path, 128, 96)  # (33, 3, 96, 128) in [0, 1]
    z = vae.encode((truth * 2 - 1).permute(1, 0, 2, 3)[None])  # (1, 9, 16, 12, 16), causal
    chain = list(z[:, : 2 * FRAMES_PER_BLOCK].split(FRAMES_PER_BLOCK, dim=1))  # the two true blocks
    chain[1] = blur(chain[1], torch.tensor([soften]))  # sigma 0: the identity
    ids, mask = tokenizer([f"a {theme} landscape, the camera pans {prompt_motion}"])
    text_kv = dit.encode_text(t5.encode(ids, mask))
    freqs = wan_frequencies(dit.cfg.head_dim, dit.cfg.rope_theta)
    schedule, gen = Schedule.shipped(), torch.Generator().manual_seed(seed)
    zero = torch.zeros(1)
    clean = [dit_call(dit, chain[0], zero, text_kv, torch.tensor([0]), freqs)[1]]
    clean.append(dit_call(dit, chain[1], zero, text_kv, torch.tensor([3]), freqs, clean[0])[1])
    state = vae.decode_chunk(torch.cat(chain, dim=1), vae.decoder_state())[1]
    speeds = []
    for j in range(2, 2 + blocks):
        starts = torch.tensor([FRAMES_PER_BLOCK * j])
        ctx = join_context(clean[-2:])
        noise = torch.randn(chain[0].shape, generator=gen)
        _, pred = sample_steps(dit, noise, range(4), text_kv, starts, freqs, ctx, schedule, gen)
        clean.append(dit_call(dit, pred, zero, text_kv, starts, freqs, ctx)[1])
        frames, state = vae.decode_chunk(pred, state)
        speeds.append(speed_along(camera_velocity((frames[0] * 0.5 + 0.5).clamp(0, 1)), motion))
    return speeds, speed_along(camera_velocity(truth[-12:]), motion)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH)
    parser.add_argument("--rollout", type=int, default=0, help="blocks drawn in a row after two true ones")
    parser.add_argument("--soften", type=float, default=0.0, help="blur the second true block (latent px)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    nets = load_toy_networks("cpu", torch.float32, args.weights)
    if args.rollout:
        print(f"theme       pan    speed of drawn blocks 3..{2 + args.rollout} (px per frame along the pan)")
        for seed, theme in enumerate(REQUIRED):
            for motion in OPPOSITE:
                drawn, _ = drawn_speeds(nets, theme, motion, motion, args.rollout, seed, args.soften)
                speeds = " ".join(f"{v:5.2f}" for v in drawn)
                print(f"{theme:10s}  {motion:5s}  {speeds}", flush=True)
        return
    print("theme       pan    truth  same-prompt  opposite-prompt   (px per frame along the pan)")
    for seed, theme in enumerate(REQUIRED):
        for motion in OPPOSITE:
            (same,), truth = drawn_speeds(nets, theme, motion, motion, 1, seed, args.soften)
            (opposite,), _ = drawn_speeds(nets, theme, motion, OPPOSITE[motion], 1, seed, args.soften)
            print(f"{theme:10s}  {motion:5s}  {truth:5.2f}  {same:11.2f}  {opposite:15.2f}", flush=True)


if __name__ == "__main__":
    main()
